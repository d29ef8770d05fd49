"""`M2F_BACKEND=ray` is refused by `m2f-ttt serve` (the Ray backend is library-level so far), never silently
served by the local backend."""

from __future__ import annotations

import pytest
import uvicorn
from typer.testing import CliRunner

from server.cli import build_app


def test_serve_refuses_the_ray_backend_until_it_is_wired(monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[object] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: served.append(app))
    monkeypatch.setattr("server.cli.signal.signal", lambda sig, handler: None)
    monkeypatch.setenv("M2F_BACKEND", "ray")
    result = CliRunner().invoke(build_app(), ["serve"])
    assert result.exit_code == 2 and "local backend only" in result.output and not served
