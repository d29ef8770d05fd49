"""The webcam page's routes (`server/routers/ui.py`): static files, no path escapes, `/v1/classes` palettes."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from mask2former_ttt.outputs.palette import class_palette, instance_palette
from model.config import preset
from server.routers import ui
from server.settings import Settings


def _client(tmp_path: Path, **settings: object) -> TestClient:
    app = FastAPI()
    app.include_router(ui.router)
    app.state.settings = Settings.from_flat(model_path=tmp_path, **settings)
    app.state.model = SimpleNamespace(cfg=preset("tiny", thing_class_ids=[11, 12]))
    return TestClient(app)


def test_page_and_assets_are_served(tmp_path: Path) -> None:
    client = _client(tmp_path)
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for asset, kind in (("app.js", "text/javascript"), ("style.css", "text/css")):
        assert f"/static/{asset}" in page.text
        resp = client.get(f"/static/{asset}")
        assert resp.status_code == 200 and resp.headers["content-type"].startswith(kind)
        assert resp.headers["cache-control"] == "no-cache" and resp.headers.get("etag")
    assert client.head("/").status_code == 200


@pytest.mark.parametrize("name", ["nope.js", "..%2Fapp.py", "%2E%2E%2Frouters%2Fui.py", "%2E%2E", ""])
def test_static_files_cannot_escape(tmp_path: Path, name: str) -> None:
    assert _client(tmp_path).get(f"/static/{name}").status_code == 404


def test_classes_match_the_server_palettes(tmp_path: Path) -> None:
    body = _client(tmp_path).get("/v1/classes").json()
    cfg = preset("tiny")
    assert body["class_names"] == cfg.class_names and body["thing_class_ids"] == [11, 12]
    assert body["class_colors"] == class_palette(len(cfg.class_names)).tolist()
    assert body["instance_colors"][:10] == instance_palette(10).tolist()  # colour i does not depend on n


def test_classes_need_the_key_when_auth_is_on(tmp_path: Path) -> None:
    client = _client(tmp_path, api_keys=["k1"])
    assert client.get("/v1/classes").status_code == 401
    assert client.get("/v1/classes", headers={"X-API-Key": "k1"}).status_code == 200
    assert client.get("/").status_code == 200  # the page itself is public (it holds no data)


def test_static_files_revalidate_and_answer_only_get_and_head(tmp_path: Path) -> None:
    client = _client(tmp_path)
    first = client.get("/static/app.js")
    again = client.get("/static/app.js", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304  # the browser's revalidation (Cache-Control: no-cache) costs no body
    head = client.head("/static/style.css")
    assert head.status_code == 200 and head.headers["content-type"].startswith("text/css") and not head.content
    assert client.get("/").headers["cache-control"] == "no-cache"


def test_a_post_to_a_static_file_is_405_allowing_get_and_head(tmp_path: Path) -> None:
    from server.allow import install_allow_header

    client = _client(tmp_path)
    install_allow_header(client.app)
    r = client.post("/static/app.js")
    assert (r.status_code, r.headers.get("allow")) == (405, "GET, HEAD")
