"""Health, readiness, metrics, info, HTTP auth, settings from the environment, CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from model.checkpoint import bundled_model_dir
from server.settings import Settings
from tests.server.svc_helpers import make_client


def test_health_ready_info_metrics(tmp_path: Path, tiny_checkpoint: Path) -> None:
    with make_client(tmp_path, tiny_checkpoint) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"model_loaded": True, "worker_alive": True, "capacity_left": True}
        info = client.get("/v1/info").json()
        assert "online" in info["methods"] and info["model"]["name"] == "tiny"
        text = client.get("/metrics").text
        for name in (
            "m2f_frames_processed_total",
            "m2f_frames_dropped_total",
            "m2f_rtsp_reconnects_total",
            "m2f_stage_seconds",
            "m2f_stream_state_bytes",
            "m2f_ttt_rollbacks_total",
            "m2f_active_streams",
        ):
            assert name in text
        assert client.get("/docs").status_code == 200
        assert "/v1/jobs" in client.get("/openapi.json").json()["paths"]


def test_http_auth(tmp_path: Path, tiny_checkpoint: Path) -> None:
    with make_client(tmp_path, tiny_checkpoint, api_keys="s3cret") as client:
        assert client.get("/healthz").status_code == 200  # probes stay open
        assert client.get("/readyz").status_code == 200
        for path in ("/metrics", "/v1/jobs", "/v1/streams", "/v1/info"):
            r = client.get(path)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", path
        assert client.get("/v1/jobs", headers={"X-API-Key": "wrong"}).status_code == 401
        assert client.get("/v1/jobs", headers={"X-API-Key": "s3cret"}).status_code == 200
        assert client.get("/metrics", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert client.get("/v1/jobs?api_key=s3cret").status_code == 401  # query keys are for WebSockets only


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("M2F_API_KEYS", "a, b,,c")
    monkeypatch.setenv("M2F_STREAMS_MAX_STATE_MEMORY", "1GiB")
    monkeypatch.setenv("M2F_UPLOAD_MAX_BYTES", "10MB")
    monkeypatch.setenv("M2F_RTSP_ALLOWED_HOSTS", "10.0.0.0/8")
    monkeypatch.setenv("M2F_STREAMS_MAX", "3")
    monkeypatch.setenv("M2F_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("M2F_WEBHOOK_ALLOWED_HOSTS", "hooks.example,10.1.0.0/16")
    s = Settings()
    assert s.api.keys == ["a", "b", "c"] and s.auth_enabled
    assert int(s.streams.max_state_memory) == 1024**3 and int(s.upload.max_bytes) == 10_000_000
    assert s.rtsp.allowed_hosts == ["10.0.0.0/8"] and s.streams.max == 3 and s.log_level == "DEBUG"
    assert s.webhook.allowed_hosts == ["hooks.example", "10.1.0.0/16"]
    assert s.streams.max_per_key == 4  # the group's other fields keep their defaults
    assert Settings.from_flat(api_keys="").auth_enabled is False
    monkeypatch.delenv("M2F_MODEL_PATH", raising=False)
    assert Settings().model.path == bundled_model_dir()


def test_flat_names_are_the_environment_names() -> None:
    s = Settings.from_flat(streams_max=2, rtsp_retry_for_s=600, host="0.0.0.0", checkpoint_dir="cp")
    assert (s.streams.max, s.rtsp.retry_for_s, s.host, str(s.checkpoint.dir)) == (2, 600, "0.0.0.0", "cp")
    with pytest.raises(TypeError, match="M2F_MAX_STREAMS"):
        Settings.from_flat(max_streams=2)  # the name before grouping
    with pytest.raises(TypeError, match="M2F_RTSP_OPEN_TIMEOUT_S"):
        Settings.from_flat(rtsp_open_timeout_s=1.5)  # a removed setting (now a constant)


def test_cli_has_serve() -> None:
    from server.cli import build_app

    result = CliRunner().invoke(build_app(), ["serve", "--help"])
    assert result.exit_code == 0 and "--port" in result.output and "--host" in result.output


def test_missing_model_fails_startup_clearly(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a mask2former-ttt checkpoint"):
        with make_client(tmp_path, tmp_path / "nowhere"):
            pass


def test_info_says_when_the_bundled_demo_model_is_served(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """The page shows its 'bundled demo model' note from this flag (it must be off for a user's own model)."""

    with make_client(tmp_path, tiny_checkpoint) as client:
        assert client.get("/v1/info").json()["model"]["bundled_demo"] is False
    with make_client(tmp_path / "b", bundled_model_dir()) as client:
        assert client.get("/v1/info").json()["model"]["bundled_demo"] is True
    page = (Path(__file__).resolve().parents[2] / "server" / "static" / "app.js").read_text()
    assert '$("demo-note").hidden = !info.model.bundled_demo' in page


def test_an_ungrouped_name_is_refused_with_its_grouped_one(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    monkeypatch.setenv("M2F_MAX_STREAMS", "3")
    monkeypatch.setenv("m2f_seed", "1")
    monkeypatch.setenv("M2F_WEBHOOK_TIMEOUT_S", "9")
    monkeypatch.setenv("M2F_UPLOAD_MAX_DURATION_S", "600")
    with pytest.raises(ValidationError) as refused:
        Settings()
    assert "M2F_MAX_STREAMS is now M2F_STREAMS_MAX" in str(refused.value)
    assert "M2F_SEED is no longer a setting" in str(refused.value)
    assert "M2F_WEBHOOK_TIMEOUT_S is no longer a setting" in str(refused.value)  # removed: a constant now
    assert "M2F_UPLOAD_MAX_DURATION_S is no longer a setting (uploads are limited by M2F_UPLOAD_MAX_FRAMES)" in str(
        refused.value
    )
    for name in ("M2F_MAX_STREAMS", "m2f_seed", "M2F_WEBHOOK_TIMEOUT_S", "M2F_UPLOAD_MAX_DURATION_S"):
        monkeypatch.delenv(name)
    assert Settings().streams.max == 8
