"""The instance filter (`score_threshold`, `min_area`) reaches post-processing from every entry point: the WebSocket
start message and `set_task`, `POST /v1/streams`, the job upload form and `m2f-ttt segment`; unset values use the
service defaults."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import mask2former_ttt.ttt.frame_step as frame_step
from model.postprocess import DEFAULT_MIN_AREA, DEFAULT_SCORE_THRESHOLD
from server.wire.inbound import pack_frame
from tests.server.svc_helpers import jpeg, make_client, make_clip, rgb_frame
from tests.server.test_api_jobs import upload, wait_job
from tests.server.test_api_rtsp import ScriptedSource, factory


class Seen:
    """Records the (task, score_threshold, min_area) of every post-processing call (any thread)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, float, int]] = []
        self.lock = threading.Lock()
        real = frame_step.postprocess

        def spy(class_logits, mask_logits, kind, *args, **kwargs):
            with self.lock:
                self.calls.append((kind, kwargs.get("score_threshold"), kwargs.get("min_area")))
            return real(class_logits, mask_logits, kind, *args, **kwargs)

        monkeypatch.setattr(frame_step, "postprocess", spy)

    def wait(self, n: int, timeout: float = 30.0) -> list[tuple[str, float, int]]:
        deadline = time.monotonic() + timeout
        while len(self.calls) < n:
            assert time.monotonic() < deadline, f"only {len(self.calls)} post-processing calls, wanted {n}"
            time.sleep(0.02)
        return list(self.calls)


def _result(ws) -> dict:
    while (msg := ws.receive_json())["type"] != "result":
        pass
    return msg


def test_websocket_start_and_set_task(tmp_path: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = Seen(monkeypatch)
    with make_client(tmp_path, tiny_checkpoint) as client, client.websocket_connect("/v1/streams/ws") as ws:
        ws.send_text(json.dumps({"type": "start", "task": "instance", "policy": "block", "score_threshold": 0.7,
                                 "min_area": 9}))
        started = ws.receive_json()
        assert (started["score_threshold"], started["min_area"]) == (0.7, 9)
        ws.send_bytes(pack_frame(jpeg(rgb_frame()), frame_id=0))
        _result(ws)
        ws.send_text(json.dumps({"type": "set_task", "task": "panoptic", "min_area": 3}))
        reply = ws.receive_json()
        assert (reply["score_threshold"], reply["min_area"]) == (0.7, 3), reply
        ws.send_bytes(pack_frame(jpeg(rgb_frame()), frame_id=1))
        _result(ws)
    assert seen.wait(2) == [("instance", 0.7, 9), ("panoptic", 0.7, 3)]


def test_websocket_defaults_and_bad_values(
    tmp_path: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = Seen(monkeypatch)
    with make_client(tmp_path, tiny_checkpoint) as client:
        defaults = client.get("/v1/info").json()["defaults"]
        assert (defaults["score_threshold"], defaults["min_area"]) == (DEFAULT_SCORE_THRESHOLD, DEFAULT_MIN_AREA)
        with client.websocket_connect("/v1/streams/ws") as ws:
            ws.send_text(json.dumps({"type": "start", "task": "instance", "policy": "block"}))
            assert ws.receive_json()["type"] == "started"
            ws.send_bytes(pack_frame(jpeg(rgb_frame()), frame_id=0))
            _result(ws)
        with client.websocket_connect("/v1/streams/ws") as ws:
            ws.send_text(json.dumps({"type": "start", "score_threshold": 2}))
            error = ws.receive_json()
            assert error["code"] == "bad_start" and "score_threshold" in error["message"], error
    assert seen.wait(1) == [("instance", DEFAULT_SCORE_THRESHOLD, DEFAULT_MIN_AREA)]


def test_camera_create(tmp_path: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = Seen(monkeypatch)
    ScriptedSource.instances.clear()
    with make_client(tmp_path, tiny_checkpoint, source_factory=factory(frames=1)) as client:
        body = {"url": "rtsp://127.0.0.1:8554/cam", "task": "instance", "policy": "block", "score_threshold": 0.6,
                "min_area": 12, "unwatched": "run"}
        r = client.post("/v1/streams", json=body)
        assert r.status_code == 201, r.text
        ScriptedSource.instances[-1].go.set()
        calls = seen.wait(1)
        assert client.post("/v1/streams", json={**body, "min_area": -1}).status_code == 422
        client.delete(f"/v1/streams/{r.json()['id']}")
    assert calls == [("instance", 0.6, 12)]


def test_job_form_fields(tmp_path: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = Seen(monkeypatch)
    clip = make_clip(tmp_path / "clip.mp4", frames=2, width=64)
    with make_client(tmp_path, tiny_checkpoint) as client:
        r = upload(client, clip.read_bytes(), task="instance", score_threshold="0.55", min_area="20")
        assert r.status_code == 202, r.text
        assert (r.json()["score_threshold"], r.json()["min_area"]) == (0.55, 20)
        assert wait_job(client, r.json()["id"])["state"] == "succeeded"
        bad = upload(client, clip.read_bytes(), score_threshold="high")
        assert bad.status_code == 422 and "score_threshold" in bad.json()["detail"]
        bad = upload(client, clip.read_bytes(), min_area="-3")
        assert bad.status_code == 422 and "min_area" in bad.json()["detail"]
    assert seen.wait(2) == [("instance", 0.55, 20)] * 2


def test_cli_segment_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mask2former_ttt.cli import app

    seen = Seen(monkeypatch)
    clip = make_clip(tmp_path / "clip.mp4", frames=2, width=64)
    args = ["segment", str(clip), "-o", str(tmp_path / "out"), "--task", "instance", "--no-progress", "--threads", "1"]
    result = CliRunner().invoke(app, [*args, "--score-threshold", "0.45", "--min-area", "7"])
    assert result.exit_code == 0, result.output
    assert seen.calls == [("instance", 0.45, 7)] * 2
    seen.calls.clear()
    assert CliRunner().invoke(app, [*args, "--max-frames", "1", "--overwrite"]).exit_code == 0  # same -o again
    assert seen.calls == [("instance", DEFAULT_SCORE_THRESHOLD, DEFAULT_MIN_AREA)]
