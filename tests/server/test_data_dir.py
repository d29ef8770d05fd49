"""One data directory: jobs, recordings and checkpoints live under `M2F_DATA_DIR` (default: the platform's user data
directory), each unless its own setting puts it elsewhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from server.settings import Settings
from tests.server.svc_helpers import fake_factory, make_clip


@pytest.fixture(autouse=True)
def no_m2f_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.env_names():
        monkeypatch.delenv(name, raising=False)


def test_everything_goes_under_the_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("M2F_DATA_DIR", str(tmp_path / "data"))
    s = Settings()
    assert (s.jobs.dir, s.recording.dir, s.checkpoint.dir) == (
        tmp_path / "data" / "jobs", tmp_path / "data" / "recordings", tmp_path / "data" / "stream-states")


def test_each_place_keeps_its_own_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("M2F_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("M2F_JOBS_DIR", str(tmp_path / "elsewhere"))
    s = Settings()
    assert s.jobs.dir == tmp_path / "elsewhere"
    data = tmp_path / "data"
    assert (s.recording.dir, s.checkpoint.dir) == (data / "recordings", data / "stream-states")


def test_the_default_is_the_platforms_user_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("sys.platform", "linux")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    s = Settings()
    assert s.data.dir == tmp_path / "xdg" / "mask2former-ttt"
    assert s.jobs.dir == tmp_path / "xdg" / "mask2former-ttt" / "jobs"


def test_the_service_writes_jobs_and_checkpoints_there(tmp_path: Path, tiny_checkpoint: Path) -> None:
    data = tmp_path / "data"
    settings = Settings.from_flat(model_path=tiny_checkpoint, data_dir=data, worker_torch_threads=1)
    clip = make_clip(tmp_path / "clip.mp4", frames=2, width=64)
    with TestClient(create_app(settings, adapter_factory=fake_factory())) as client:
        job = client.post("/v1/jobs", files={"file": ("clip.mp4", clip.read_bytes(), "video/mp4")}).json()
        with client.websocket_connect("/v1/streams/ws") as ws:
            ws.send_text(json.dumps({"type": "start"}))
            assert ws.receive_json()["type"] == "started"
            ws.send_text(json.dumps({"type": "checkpoint"}))
            saved = ws.receive_json()
    assert (data / "jobs" / job["id"] / "job.json").is_file()
    assert saved["type"] == "checkpoint", saved
    assert any((data / "stream-states").rglob(f"*{saved['checkpoint_id']}*"))
