"""A camera that goes away waits without its worker slot and resumes with its adapted state (a scripted source)."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import torch

from server.sources.base import SourceState, SourceStats
from server.worker.device_worker import default_adapter_factory
from tests.server.svc_helpers import make_client, rgb_frame

URL = "rtsp://10.0.0.5/cam"
REFUSED = "connection refused by 10.0.0.5:554 (nothing is listening there)"


class ManualSource:
    """Looks like RtspSource; the test plays the camera: `emit` a state, `frame` a frame (from the test thread)."""

    def __init__(self, url: str, on_frame: Any, on_state: Any = None, **kw: Any) -> None:
        self.on_frame, self.on_state, self.kw = on_frame, on_state, kw
        self._state = SourceState.STOPPED
        self._stats = SourceStats(codec="h264", width=64, height=48)
        self.sent = 0

    @property
    def state(self) -> SourceState:
        return self._state

    @property
    def stats(self) -> SourceStats:
        return SourceStats(**self._stats.as_dict())

    def emit(self, state: SourceState) -> None:
        self._state = state
        if self.on_state:
            self.on_state(state)

    def fail(self) -> None:
        self._stats.connect_failures += 1
        self._stats.last_error = REFUSED
        self.emit(SourceState.RECONNECTING)

    def frame(self) -> None:
        self.on_frame(rgb_frame(30 + 40 * (self.sent % 5)), self.sent / 10, self.sent)
        self.sent += 1

    def start(self) -> None:
        self.emit(SourceState.CONNECTING)

    def stop(self, timeout: float = 2.0) -> bool:
        if not self._state.is_terminal:
            self.emit(SourceState.STOPPED)
        return True


def wait_for(predicate: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} not reached"
        time.sleep(0.02)


def weights(client: Any, sid: str) -> dict[str, torch.Tensor]:
    """The adapted tensors of the stream's current session, read on its lane."""
    app = client.app.state
    session = app.rtsp.streams[sid].session
    state = app.worker.control(session, "peek", lambda s: s.adapter.state_dict(), notify=False).result(30)
    return {k: v.clone() for k, v in _tensors(state)}


def _tensors(obj: Any, prefix: str = "") -> list[tuple[str, torch.Tensor]]:
    if isinstance(obj, torch.Tensor):
        return [(prefix, obj)]
    if isinstance(obj, dict):
        return [kv for k, v in obj.items() for kv in _tensors(v, f"{prefix}.{k}")]
    if isinstance(obj, (list, tuple)):
        return [kv for i, v in enumerate(obj) for kv in _tensors(v, f"{prefix}[{i}]")]
    return []


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def status(client: Any, sid: str) -> dict:
    return client.get(f"/v1/streams/{sid}").json()


def open_camera(client: Any, sources: list[ManualSource]) -> str:
    r = client.post("/v1/streams", json={"url": URL, "unwatched": "run", "method": "online", "preset": "full", "policy": "block"})
    assert r.status_code == 201, r.text
    sources[-1].emit(SourceState.RUNNING)
    return r.json()["id"]


def feed(client: Any, sid: str, source: ManualSource, n: int) -> None:
    before = status(client, sid)["processed"]
    for _ in range(n):
        source.frame()
    wait_for(lambda: status(client, sid)["processed"] == before + n, f"{n} frames processed")


def test_a_camera_away_waits_without_its_slot_and_resumes_with_its_adapted_weights(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    sources: list[ManualSource] = []
    factory = lambda **kw: sources.append(ManualSource(**kw)) or sources[-1]  # noqa: E731
    with make_client(tmp_path, tiny_checkpoint, factory=default_adapter_factory, source_factory=factory,
                     rtsp_allowed_hosts="10.0.0.0/8") as client:
        sid = open_camera(client, sources)
        camera = sources[0]
        assert sources[0].kw["backoff_max_s"] == 60.0 and sources[0].kw["max_outage_s"] >= 3600
        theta0 = weights(client, sid)
        with client.websocket_connect(f"/v1/streams/{sid}/results") as ws:
            assert ws.receive_json()["type"] == "subscribed"
            feed(client, sid, camera, 4)
            adapted = weights(client, sid)
            assert not same(adapted, theta0)

            camera.fail()
            assert next_state(ws) == ("waiting", REFUSED)
            wait_for(lambda: not status(client, sid)["session_open"], "session released")
            assert client.app.state.worker.capacity()["streams"] == 0
            info = status(client, sid)
            assert info["state"] == "waiting" and info["last_error"] == REFUSED and info["memory_bytes"] == 0
            camera.fail()  # more failed attempts: still waiting, nothing more to release
            assert status(client, sid)["state"] == "waiting"

            camera.emit(SourceState.RUNNING)
            assert next_state(ws)[0] == "running"
            assert client.app.state.worker.capacity()["streams"] == 1
            assert status(client, sid)["processed"] == 4
            resumed = weights(client, sid)
        assert same(resumed, adapted) and not same(resumed, theta0)
        feed(client, sid, camera, 2)  # and it goes on adapting
        assert client.delete(f"/v1/streams/{sid}").status_code == 204


def next_state(ws: Any) -> tuple[str, str | None]:
    """The next `state` message's state and reason (other messages skipped)."""
    while True:
        msg = ws.receive_json()
        if msg["type"] == "state":
            return msg["state"], msg["last_error"]


def test_a_camera_back_while_the_service_is_full_keeps_waiting_and_retries(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    sources: list[ManualSource] = []
    factory = lambda **kw: sources.append(ManualSource(**kw)) or sources[-1]  # noqa: E731
    delays: list[float] = []
    go_on = threading.Event()

    async def sleep(seconds: float) -> None:
        delays.append(seconds)
        await asyncio.to_thread(go_on.wait, 30)
        go_on.clear()

    with make_client(tmp_path, tiny_checkpoint, factory=default_adapter_factory, source_factory=factory,
                     rtsp_allowed_hosts="10.0.0.0/8", streams_max=1) as client:
        client.app.state.rtsp.waits.sleep = sleep
        sid = open_camera(client, sources)
        feed(client, sid, sources[0], 2)
        sources[0].fail()
        wait_for(lambda: not status(client, sid)["session_open"], "session released")
        other = open_camera(client, sources)  # the freed slot is taken

        sources[0].emit(SourceState.RUNNING)
        wait_for(lambda: len(delays) == 1, "a re-admission retry scheduled")
        info = status(client, sid)
        assert info["state"] == "waiting" and "the service is full" in info["last_error"], info
        go_on.set()
        wait_for(lambda: len(delays) == 2, "a second retry")
        assert client.delete(f"/v1/streams/{other}").status_code == 204
        go_on.set()
        wait_for(lambda: status(client, sid)["state"] == "running", "resumed")
        info = status(client, sid)
        assert info["session_open"] and info["processed"] == 2 and "full" not in info["last_error"], info
        assert client.delete(f"/v1/streams/{sid}").status_code == 204
