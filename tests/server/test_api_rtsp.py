"""RTSP camera streams through the API with a scripted source (the real RtspSource has its own tests)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from server.sources.base import SourceState, SourceStats
from tests.server.svc_helpers import make_client, rgb_frame


class ScriptedSource:
    """Looks like RtspSource: delivers `frames` frames from a thread, then optionally fails."""

    instances: list["ScriptedSource"] = []

    def __init__(self, url, on_frame, max_fps=None, on_state=None, frames: int = 5, fail_after: bool = False, **kw):
        self.url, self.on_frame, self.on_state, self.kw = url, on_frame, on_state, {"max_fps": max_fps, **kw}
        self.frames, self.fail_after = frames, fail_after
        self._state = SourceState.STOPPED
        self._stats = SourceStats(codec="h264", width=64, height=48, fps=10.0)
        self._stop = threading.Event()
        self.go = threading.Event()
        ScriptedSource.instances.append(self)

    @property
    def state(self) -> SourceState:
        return self._state

    @property
    def stats(self) -> SourceStats:
        return SourceStats(**self._stats.as_dict())

    def _set(self, state: SourceState) -> None:
        self._state = state
        if self.on_state:
            self.on_state(state)

    def start(self) -> None:
        self._set(SourceState.CONNECTING)
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        self._set(SourceState.RUNNING)
        self.go.wait(10)
        for i in range(self.frames):
            if self._stop.is_set():
                return
            self.on_frame(rgb_frame(20 * i), i / 10, i)
            self._stats.frames += 1
            time.sleep(0.01)
        if self.fail_after:
            self._stats.reconnects, self._stats.last_error = 3, "connection refused by 127.0.0.1:9"
            self._set(SourceState.RECONNECTING)
            self._set(SourceState.FAILED)

    def stop(self, timeout: float = 2.0) -> bool:
        self._stop.set()
        self.go.set()
        if not self._state.is_terminal:
            self._set(SourceState.STOPPED)
        return True


def factory(**options):
    return lambda **kw: ScriptedSource(**kw, **options)


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_camera_stream_lifecycle_and_results(tmp_path: Path, tiny_checkpoint: Path) -> None:
    ScriptedSource.instances.clear()
    with make_client(tmp_path, tiny_checkpoint, source_factory=factory(frames=4)) as client:
        r = client.post(
            "/v1/streams",
            json={"url": "rtsp://user:secret@127.0.0.1:8554/cam", "task": "panoptic", "policy": "block", "max_fps": 5},
        )
        assert r.status_code == 201, r.text
        sid = r.json()["id"]
        assert r.headers["location"] == f"/v1/streams/{sid}"
        src = ScriptedSource.instances[-1]
        assert src.kw["max_fps"] == 5 and src.url.endswith("/cam")
        status = client.get(f"/v1/streams/{sid}").json()
        assert status["state"] == "running" and "secret" not in status["url"]
        with client.websocket_connect(f"/v1/streams/{sid}/results") as ws:
            assert ws.receive_json()["type"] == "subscribed"
            src.go.set()
            results = [ws.receive_json() for _ in range(4)]
            assert [m["frame_id"] for m in results] == [0, 1, 2, 3]
            assert results[0]["task"] == "panoptic" and results[0]["pts_s"] == 0.0
            status = client.get(f"/v1/streams/{sid}").json()
            assert (status["frames"], status["processed"], status["drops"]) == (4, 4, 0)
            assert status["memory_bytes"] > 0 and status["subscribers"] == 1
            assert client.post(f"/v1/streams/{sid}/reset").json()["frames_before_reset"] == 4
            cp = client.post(f"/v1/streams/{sid}/checkpoint")
            assert cp.status_code == 201
            assert client.post(f"/v1/streams/{sid}/restore", json=cp.json()).status_code == 200
            assert client.post(f"/v1/streams/{sid}/restore", json={"checkpoint_id": "x/../y"}).status_code == 400
            assert client.delete(f"/v1/streams/{sid}").status_code == 204
            msgs = []
            while (m := ws.receive_json())["type"] != "closed":
                msgs.append(m)
        assert client.get(f"/v1/streams/{sid}").status_code == 404
        assert client.delete(f"/v1/streams/{sid}").status_code == 404
        assert client.get("/readyz").json()["capacity"]["streams"] == 0


def test_failed_camera_releases_capacity_but_stays_visible(tmp_path: Path, tiny_checkpoint: Path) -> None:
    with make_client(
        tmp_path, tiny_checkpoint, streams_max=1, source_factory=factory(frames=0, fail_after=True)
    ) as client:
        sid = client.post("/v1/streams", json={"url": "rtsp://127.0.0.1:9/cam"}).json()["id"]
        r = client.post("/v1/streams", json={"url": "rtsp://127.0.0.1:9/other"})
        assert r.status_code == 503 and "1 of 1 streams" in r.json()["detail"]
        ScriptedSource.instances[-1].go.set()
        wait_for(lambda: client.get(f"/v1/streams/{sid}").json()["state"] == "failed")
        wait_for(lambda: client.get("/readyz").json()["capacity"]["streams"] == 0)
        status = client.get(f"/v1/streams/{sid}").json()
        assert status["reconnects"] == 3
        assert status["last_error"] == "connection refused by 127.0.0.1:9"  # a keyless server's caller owns it
        assert not status["session_open"] and status["memory_bytes"] == 0
        assert client.post(f"/v1/streams/{sid}/reset").status_code == 409
        assert "m2f_rtsp_reconnects_total 3.0" in client.get("/metrics").text
        assert client.delete(f"/v1/streams/{sid}").status_code == 204


def test_url_allowlist_and_validation(tmp_path: Path, tiny_checkpoint: Path) -> None:
    with make_client(
        tmp_path, tiny_checkpoint, rtsp_allowed_hosts="10.0.0.0/8,cam.example.com", source_factory=factory()
    ) as client:
        r = client.post("/v1/streams", json={"url": "http://10.1.2.3/cam"})
        assert r.status_code == 400 and "scheme 'http' is not allowed" in r.json()["detail"]
        r = client.post("/v1/streams", json={"url": "rtsp://u:pw@192.168.1.5/cam"})
        assert r.status_code == 400 and "not in the allowed hosts" in r.json()["detail"] and "pw" not in r.text
        r = client.post("/v1/streams", json={"url": "rtsp://10.1.2.3/cam", "method": "nope"})
        assert r.status_code == 400 and "unknown method" in r.json()["detail"]
        assert client.post("/v1/streams", json={"url": "rtsp://10.1.2.3/cam", "task": "depth"}).status_code == 422
        assert client.post("/v1/streams", json={"url": "rtsp://cam.example.com/x"}).status_code == 201
        with client.websocket_connect("/v1/streams/nope/results") as ws:
            assert ws.receive_json()["code"] == "not_found"
