"""End to end: bad inputs are refused with a clear status / close code and message while a concurrent healthy
stream keeps getting results; API-key auth on and off; admission refusal when full; metrics exposed."""

from __future__ import annotations

import json
import os
import struct
import threading
import time
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from server.wire.inbound import pack_frame
from tests.server.svc_helpers import build_tiny_checkpoint, make_clip, running_service, video_jpegs

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")


def expect_close(ws, code: int) -> dict:
    """The error message the server sends before closing with `code`."""
    msg = json.loads(ws.recv(timeout=30))
    assert msg["type"] == "error" and msg["message"], msg
    with pytest.raises(ConnectionClosed) as exc:
        ws.recv(timeout=30)
    assert exc.value.rcvd is not None and exc.value.rcvd.code == code, exc.value
    return msg


class HealthyStream(threading.Thread):
    """Streams frames in a loop (policy block) and timestamps every result until stopped."""

    def __init__(self, url: str, frames: list[bytes]) -> None:
        super().__init__(daemon=True)
        self.url, self.frames = url, frames
        self.result_times: list[float] = []
        self.errors: list[dict] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with connect(self.url, open_timeout=10) as ws:
            ws.send(json.dumps({"type": "start", "policy": "block", "queue_size": 1}))
            assert json.loads(ws.recv(timeout=30))["type"] == "started"
            i = 0
            while not self.stop.is_set():
                ws.send(pack_frame(self.frames[i % len(self.frames)], frame_id=i))
                msg = json.loads(ws.recv(timeout=60))
                (self.result_times if msg["type"] == "result" else self.errors).append(
                    time.monotonic() if msg["type"] == "result" else msg
                )
                i += 1


def test_bad_inputs_do_not_disturb_a_healthy_stream(tmp_path: Path, ckpt: Path) -> None:
    clip = make_clip(tmp_path / "clip.mp4", frames=6, width=96)
    with running_service(tmp_path, ckpt, upload_max_bytes=256 * 1024, streams_max_frame_bytes=512 * 1024) as server:
        healthy = HealthyStream(f"{server.ws_url}/v1/streams/ws", video_jpegs("carphone_pristine.mp4", 4))
        healthy.start()
        deadline = time.monotonic() + 60
        while len(healthy.result_times) < 2:
            assert time.monotonic() < deadline and healthy.is_alive()
            time.sleep(0.05)
        with httpx.Client(base_url=server.url, timeout=30) as http:
            data = clip.read_bytes()
            r = http.post("/v1/jobs", files={"file": ("cut.mp4", data[: len(data) // 2], "video/mp4")})
            assert r.status_code == 422 and "corrupt" in r.json()["detail"]
            r = http.post("/v1/jobs", files={"file": ("notes.mp4", b"meeting notes\n" * 500, "video/mp4")})
            assert r.status_code == 415 and "not a video" in r.json()["detail"]
            r = http.post("/v1/jobs", files={"file": ("big.mp4", os.urandom(300 * 1024), "video/mp4")})
            assert r.status_code == 413 and "exceeds the limit" in r.json()["detail"]

        ws_url = f"{server.ws_url}/v1/streams/ws"
        with connect(ws_url) as ws:
            ws.send(json.dumps({"type": "start"}))
            assert json.loads(ws.recv(timeout=30))["type"] == "started"
            ws.send(struct.pack(">I", 1000) + b'{"frame_id": 1}')
            assert "header length 1000" in expect_close(ws, 1007)["message"]
        with connect(ws_url) as ws:
            ws.send(json.dumps({"type": "start"}))
            json.loads(ws.recv(timeout=30))
            ws.send(pack_frame(b"BM" + b"\x00" * 64, frame_id=0))
            assert expect_close(ws, 1003)["code"] == "unsupported_image"
        with connect(ws_url) as ws:
            ws.send("{not json")
            assert expect_close(ws, 1007)["code"] == "bad_json"

        errors_done = time.monotonic()
        deadline = errors_done + 60
        while sum(t > errors_done for t in healthy.result_times) < 3:
            assert time.monotonic() < deadline and healthy.is_alive(), "the healthy stream stalled"
            time.sleep(0.05)
        healthy.stop.set()
        healthy.join(60)
        assert healthy.errors == []


def test_auth_admission_and_metrics(tmp_path: Path, ckpt: Path) -> None:
    with running_service(tmp_path, ckpt, api_keys="k-123", streams_max=1) as server:
        key = {"X-API-Key": "k-123"}
        with httpx.Client(base_url=server.url, timeout=30) as http:
            assert http.get("/healthz").status_code == 200
            assert http.get("/v1/jobs").status_code == 401
            assert http.get("/v1/jobs", headers={"Authorization": "Bearer nope"}).status_code == 401
            assert http.get("/v1/jobs", headers=key).status_code == 200
            assert http.get("/metrics").status_code == 401

            with connect(f"{server.ws_url}/v1/streams/ws") as ws:
                ws.send(json.dumps({"type": "start"}))
                assert expect_close(ws, 1008)["code"] == "unauthorized"
            with connect(f"{server.ws_url}/v1/streams/ws?api_key=k-123") as ws:
                ws.send(json.dumps({"type": "start", "policy": "block"}))
                assert json.loads(ws.recv(timeout=30))["type"] == "started"
                ws.send(pack_frame(video_jpegs("bikes.mp4", 1)[0], frame_id=0))
                assert json.loads(ws.recv(timeout=60))["type"] == "result"

                with connect(f"{server.ws_url}/v1/streams/ws", additional_headers=key) as second:
                    second.send(json.dumps({"type": "start"}))
                    msg = expect_close(second, 1013)
                    assert msg["code"] == "capacity" and "1 of 1 streams" in msg["message"]
                r = http.post("/v1/streams", json={"url": "rtsp://127.0.0.1:9/cam"}, headers=key)
                assert r.status_code == 503 and "full" in r.json()["detail"]
                assert http.get("/readyz").status_code == 503

                metrics = http.get("/metrics", headers=key).text
                assert 'm2f_frames_processed_total{source="ws"} 1.0' in metrics
                assert 'm2f_stage_seconds_count{stage="ttt"} 1.0' in metrics
                assert 'm2f_admission_refusals_total{reason="streams"} 2.0' in metrics
                assert 'm2f_active_streams{source="ws"} 1.0' in metrics
                assert "m2f_stream_state_bytes{stream=" in metrics
