"""`m2f-ttt serve` binds M2F_HOST / M2F_PORT, and its --host / --port flags win over them."""

from __future__ import annotations

from typing import Any

import pytest
import uvicorn
from pydantic import ValidationError
from typer.testing import CliRunner

import server.logging_setup
from server.cli import build_app
from server.settings import Settings


@pytest.fixture
def bound(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What `uvicorn.run` was called with (it is replaced: nothing is served, no handler or logging is changed)."""
    calls: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.update(kwargs))
    monkeypatch.setattr(server.logging_setup, "setup_logging", lambda level: None)
    monkeypatch.setattr("server.cli.signal.signal", lambda sig, handler: None)
    for name in ("M2F_HOST", "M2F_PORT"):
        monkeypatch.delenv(name, raising=False)
    return calls


def serve(*args: str) -> None:
    result = CliRunner().invoke(build_app(), ["serve", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output


def test_defaults(bound: dict[str, Any]) -> None:
    serve()
    assert (bound["host"], bound["port"]) == ("127.0.0.1", 8000)


def test_environment_sets_host_and_port_and_flags_win(bound: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("M2F_HOST", "0.0.0.0")
    monkeypatch.setenv("M2F_PORT", "9123")
    serve()
    assert (bound["host"], bound["port"]) == ("0.0.0.0", 9123)
    serve("--host", "127.0.0.2", "--port", "9200")
    assert (bound["host"], bound["port"]) == ("127.0.0.2", 9200)
    serve("--port", "9201")
    assert (bound["host"], bound["port"]) == ("0.0.0.0", 9201)


def test_kubernetes_service_link_port_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("M2F_PORT", "tcp://10.0.0.5:8000")
    with pytest.raises(ValidationError, match="Kubernetes sets such a value"):
        Settings()
    monkeypatch.setenv("M2F_PORT", "0")
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        Settings()


@pytest.mark.parametrize(("name", "value", "says"), [
    ("M2F_MAX_STREAMS", "3", "M2F_MAX_STREAMS is now M2F_STREAMS_MAX"),  # an ungrouped (old) name
    ("M2F_STREAMS_MAX", "many", "streams.max"),  # a value of the wrong type
])
def test_bad_settings_end_in_one_line_and_exit_2(bound: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
                                                 name: str, value: str, says: str) -> None:
    monkeypatch.setenv(name, value)
    result = CliRunner().invoke(build_app(), ["serve"])
    assert result.exit_code == 2 and not bound, "nothing is served"
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and says in lines[0] and "Traceback" not in result.output
