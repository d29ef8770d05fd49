"""The layering rules of docs/architecture: imports point one way, service files stay small, the worker is typed
against the Adapter protocol."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = {"model": set(), "mask2former_ttt": {"model"}, "server": {"model", "mask2former_ttt"}}
MAX_SERVER_LINES = 320


def _imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_imports_point_one_way(package: str) -> None:
    forbidden = set(LAYERS) - LAYERS[package] - {package}
    bad = {
        f"{p.relative_to(ROOT)} imports {sorted(_imported_packages(p) & forbidden)}"
        for p in (ROOT / package).rglob("*.py")
        if _imported_packages(p) & forbidden
    }
    assert not bad, sorted(bad)


def test_service_files_stay_small() -> None:
    big = {str(p.relative_to(ROOT)): n for p in (ROOT / "server").rglob("*.py")
           if (n := len(p.read_text().splitlines())) > MAX_SERVER_LINES}
    assert not big, big


def test_the_worker_holds_adapters_by_protocol() -> None:
    from mask2former_ttt.ttt.protocol import Adapter
    from server.worker.device_worker import AdapterFactory

    assert AdapterFactory.__args__[-1] is Adapter  # factories return an Adapter
    source = (ROOT / "server/worker/stream_session.py").read_text()
    assert "self.adapter: Adapter | None = None" in source
    for path in (ROOT / "server").rglob("*.py"):
        text = path.read_text()
        assert "adapter: Any" not in text and 'hasattr(adapter' not in text, path


def test_every_route_documents_its_response() -> None:
    from server.app import create_app

    spec = create_app().openapi()
    undocumented = [
        f"{method.upper()} {path} {code}"
        for path, ops in spec["paths"].items()
        for method, op in ops.items()
        for code, response in op["responses"].items()
        if code.startswith("2") and code != "204"
        and not any("$ref" in c.get("schema", {}) or t != "application/json" for t, c in response.get("content", {}).items())
    ]
    assert not undocumented, undocumented
