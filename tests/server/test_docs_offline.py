"""`/docs` and `/redoc` reference only the service's own assets (no CDN), and those assets are served."""

from __future__ import annotations

import re
from pathlib import Path

from tests.server.svc_helpers import make_client

ASSET_REF = re.compile(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""")


def _refs(html: str) -> list[str]:
    """Every src= / href= / url: URL of a docs page."""
    return ASSET_REF.findall(html)


def test_docs_pages_use_local_assets_only(tmp_path: Path, tiny_checkpoint: Path) -> None:
    with make_client(tmp_path, tiny_checkpoint) as client:
        pages = (("/docs", {"swagger-ui-bundle.js", "swagger-ui.css"}), ("/redoc", {"redoc.standalone.js"}))
        for page, needed in pages:
            response = client.get(page)
            assert response.status_code == 200 and "text/html" in response.headers["content-type"], page
            refs = _refs(response.text)
            remote = [u for u in refs if "://" in u or u.startswith("//")]
            assert not remote, f"{page} loads from other hosts: {remote}"
            assert "fonts.googleapis" not in response.text and "cdn." not in response.text, page
            assert needed <= {u.rsplit("/", 1)[-1] for u in refs}, (page, refs)
            for url in refs:
                if url.startswith("/docs-static/"):
                    asset = client.get(url)
                    assert asset.status_code == 200 and len(asset.content) > 1000, url
        assert client.get("/openapi.json").status_code == 200
        assert client.get("/docs-static/../settings.py").status_code == 404
        assert client.get("/docs-static/core.py").status_code == 404  # only the listed assets
        assert "/docs" not in client.get("/openapi.json").json()["paths"]
