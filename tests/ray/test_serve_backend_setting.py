"""`m2f-ttt serve --backend` / `M2F_BACKEND`: the app is built with the Ray backend when asked, a bad value or a
missing `ray` is refused with a message naming the problem (exit 2), never silently served by the local backend."""

from __future__ import annotations

import importlib.util

import pytest
import uvicorn
from typer.testing import CliRunner

import server.logging_setup
from server.cli import build_app


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list:
    apps: list = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: apps.append(app))
    monkeypatch.setattr("server.cli.signal.signal", lambda sig, handler: None)
    monkeypatch.setattr(server.logging_setup, "setup_logging", lambda level: None)  # not onto CliRunner's stream
    return apps


@pytest.mark.parametrize("how", ["flag", "env"])
def test_serve_builds_the_app_with_the_ray_backend(how: str, served: list, monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["serve"]
    if how == "flag":
        args += ["--backend", "ray"]
    else:
        monkeypatch.setenv("M2F_BACKEND", "ray")
    result = CliRunner().invoke(build_app(), args)
    assert result.exit_code == 0, result.output
    assert served and served[0].state.settings.backend == "ray"


def test_serve_refuses_an_unknown_backend(served: list) -> None:
    result = CliRunner().invoke(build_app(), ["serve", "--backend", "k8s"])
    assert result.exit_code == 2 and "local or ray" in result.output and not served


def test_serve_names_the_missing_ray_extra(served: list, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    result = CliRunner().invoke(build_app(), ["serve", "--backend", "ray"])
    assert result.exit_code == 2 and "pip install '.[ray]'" in result.output and not served
