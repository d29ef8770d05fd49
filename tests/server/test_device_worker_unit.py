"""DeviceWorker with fake adapters and a config-only model (fast): the defaults of a worker built from the
required settings, `alive`, stopping (a stuck lane, the decode threads), lane counts after failed or cancelled
admissions, decoding started by `offer` / `put`, control replies, and what closing a stream sets off (checkpoint
retention, a lane move).

No sleeps: tests wait on Events, Futures and queues with timeouts; nothing asserts on how long anything took.
"""

from __future__ import annotations

import queue
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from model.config import preset
from server.metrics import Metrics
from server.worker import ControlReply, DeviceWorker, FrameItem, SessionClosed, StreamSession
from server.worker import decode_ahead as decode_ahead_module
from server.worker.state_store import StreamStateStore
from tests.server.svc_helpers import THING_IDS, fake_factory, png, rgb_frame

WAIT_S = 10


@pytest.fixture
def model() -> Any:
    """What the fake adapters read of a model: its config."""
    return SimpleNamespace(cfg=preset("tiny", thing_class_ids=THING_IDS))


def worker_for(model: Any, tmp_path: Path, start: bool = True, **kw: Any) -> DeviceWorker:
    params: dict[str, Any] = {"max_streams": 4, "max_state_memory": 10_000, "states_dir": tmp_path / "states",
                              "adapter_factory": fake_factory()}
    params.update(kw)
    worker = DeviceWorker(model, Metrics(), **params)
    if start:
        worker.start()
    return worker


def new_session(method: str = "online") -> tuple[StreamSession, queue.Queue]:
    out: queue.Queue = queue.Queue()
    return StreamSession("ws", "semantic", method, "default", "block", 4, out.put), out


def lane_thread(worker: DeviceWorker, s: StreamSession) -> str:
    """The name of the thread that runs `s`'s controls now."""
    return worker.control(s, "probe", lambda sess: {"thread": threading.current_thread().name}).result(WAIT_S)[
        "thread"]


# ---- defaults and lifecycle ---------------------------------------------------------------------------------------
def test_a_worker_built_from_the_required_settings_runs_one_lane_unbatched_with_one_decode_thread(model, tmp_path):
    worker = DeviceWorker(model, Metrics(), max_streams=1, max_state_memory=1, states_dir=tmp_path)
    assert worker.lanes == 1 and worker.models == [model]
    assert worker.cross_stream_batch == 1
    assert worker.seed == 0
    assert worker.max_frame_pixels == worker.decoder.max_pixels == 16_777_216  # 4096 x 4096
    assert worker.decoder._pool._max_workers == 1


def test_a_worker_is_alive_only_between_start_and_stop(model, tmp_path) -> None:
    worker = worker_for(model, tmp_path, start=False)
    assert not worker.alive
    worker.start()
    assert worker.alive
    worker.stop()
    assert not worker.alive


def test_stop_gives_up_on_a_stuck_lane_after_its_timeout_and_still_closes_the_streams(model, tmp_path) -> None:
    worker = worker_for(model, tmp_path)
    s, out = new_session()
    worker.open_session(s).result(WAIT_S)
    entered, gate = threading.Event(), threading.Event()

    def stuck(sess: StreamSession) -> dict:
        entered.set()
        assert gate.wait(WAIT_S * 3)
        return {}

    held = worker.control(s, "stuck", stuck)
    assert entered.wait(WAIT_S)
    try:
        worker.stop(timeout=0)  # returns although the lane is still inside `stuck`
        assert not gate.is_set() and worker._threads[0].is_alive()
        closed = out.get(timeout=WAIT_S)
        assert isinstance(closed, SessionClosed) and closed.reason == "server shutting down"
    finally:
        gate.set()
    held.result(WAIT_S)


def test_stop_cancels_the_decodes_that_have_not_started(model, tmp_path, monkeypatch) -> None:
    entered, gate = threading.Event(), threading.Event()

    def blocking_decode(data: bytes, max_pixels: int):
        entered.set()
        assert gate.wait(WAIT_S)
        return rgb_frame(), 0.0

    monkeypatch.setattr(decode_ahead_module, "decode_image", blocking_decode)
    worker = worker_for(model, tmp_path, start=False)  # one decode thread
    busy, waiting = FrameItem(frame_id=0, data=png(rgb_frame())), FrameItem(frame_id=1, data=png(rgb_frame()))
    worker.decoder.start(busy)
    assert entered.wait(WAIT_S)  # the only decode thread is taken
    worker.decoder.start(waiting)
    try:
        worker.stop()
        assert waiting.decoding.cancelled()
    finally:
        gate.set()
    assert busy.decoding.result(WAIT_S) is not None  # the decode under way finishes


# ---- admission and lane counts -------------------------------------------------------------------------------------
def test_a_failed_admission_frees_its_lane_and_an_admitted_stream_keeps_its_own(model, tmp_path) -> None:
    worker = worker_for(model, tmp_path, lanes=2)
    try:
        bad, _ = new_session(method="no_such_method")
        with pytest.raises(ValueError):
            worker.open_session(bad).result(WAIT_S)
        assert bad.lane == 0
        first, _ = new_session()
        worker.open_session(first).result(WAIT_S)
        assert first.lane == 0  # the refused stream's lane was free again
        second, _ = new_session()
        worker.open_session(second).result(WAIT_S)
        assert second.lane == 1  # the admitted stream still counts on lane 0
        assert worker.balancer.load == [1, 1]
    finally:
        worker.stop()


def test_an_admission_its_caller_cancelled_frees_its_lane(model, tmp_path) -> None:
    worker = worker_for(model, tmp_path, start=False, lanes=2)
    try:
        gone, _ = new_session()
        fut = worker.open_session(gone)
        assert gone.lane == 0 and fut.cancel()
        kept, _ = new_session()
        worker.open_session(kept)
        assert kept.lane == 0
        assert worker.balancer.load == [1, 0]
    finally:
        worker.stop()


# ---- producers and controls ---------------------------------------------------------------------------------------
def test_offer_and_put_start_decoding_an_image_before_it_is_queued(model, tmp_path) -> None:
    worker = worker_for(model, tmp_path)
    try:
        s, _ = new_session()
        worker.open_session(s).result(WAIT_S)
        gate, held = hold(worker, s)
        try:
            offered = FrameItem(frame_id=0, data=png(rgb_frame()))
            put = FrameItem(frame_id=1, data=png(rgb_frame()))
            assert worker.offer(s, offered) and worker.put(s, put, timeout=WAIT_S)
            assert offered.decoding is not None and put.decoding is not None  # the lane is still busy elsewhere
        finally:
            gate.set()
        held.result(WAIT_S)
    finally:
        worker.stop()


def hold(worker: DeviceWorker, s: StreamSession) -> tuple[threading.Event, Any]:
    """Keep `s`'s lane busy in a control until the returned gate is set; returns (gate, its Future)."""
    entered, gate = threading.Event(), threading.Event()

    def run(sess: StreamSession) -> dict:
        entered.set()
        assert gate.wait(WAIT_S)
        return {}

    fut = worker.control(s, "hold", run, notify=False)
    assert entered.wait(WAIT_S)
    return gate, fut


def test_a_control_reply_reaches_the_stream_unless_told_otherwise(model, tmp_path) -> None:
    worker = worker_for(model, tmp_path)
    try:
        s, out = new_session()
        worker.open_session(s).result(WAIT_S)
        assert worker.control(s, "quiet", lambda sess: {"n": 1}, notify=False).result(WAIT_S) == {"n": 1}
        assert worker.control(s, "probe", lambda sess: {"n": 2}).result(WAIT_S) == {"n": 2}
        assert out.get(timeout=WAIT_S) == ControlReply(s.id, "probe", {"n": 2})
        assert out.empty()
    finally:
        worker.stop()


# ---- what closing a stream sets off ---------------------------------------------------------------------------------
def test_closing_a_stream_starts_the_retention_of_its_checkpoints(model, tmp_path) -> None:
    store = StreamStateStore(tmp_path / "states", retention_s=0)  # deleted as soon as their stream ends
    worker = worker_for(model, tmp_path, states_dir=store)
    try:
        s, _ = new_session()
        worker.open_session(s).result(WAIT_S)
        saved = worker.checkpoint(s).result(WAIT_S)
        assert [r.checkpoint_id for r in store.index.visible(lambda owner: True)] == [saved["checkpoint_id"]]
        worker.close_session(s).result(WAIT_S)
        assert store.index.visible(lambda owner: True) == []
        assert not (tmp_path / "states" / f"{saved['checkpoint_id']}.pt").exists()
    finally:
        worker.stop()


def test_a_close_that_leaves_the_lanes_uneven_moves_the_newest_stream_of_the_busiest_lane(model, tmp_path) -> None:
    worker = worker_for(model, tmp_path, lanes=2)
    try:
        streams = []
        for _ in range(4):
            s, _ = new_session()
            worker.open_session(s).result(WAIT_S)
            streams.append(s)
        assert [s.lane for s in streams] == [0, 1, 0, 1]
        worker.close_session(streams[1]).result(WAIT_S)
        assert worker.balancer.load == [2, 1]  # one apart: nothing moves
        worker.close_session(streams[3]).result(WAIT_S)
        assert lane_thread(worker, streams[2]) == "device-worker-1"  # runs after the queued move
        assert lane_thread(worker, streams[0]) == "device-worker-0"
        assert [streams[0].lane, streams[2].lane] == [0, 1] and worker.balancer.load == [1, 1]
    finally:
        worker.stop()


def test_an_in_memory_frame_reports_only_the_decoding_its_source_spent(model, tmp_path) -> None:
    worker = worker_for(model, tmp_path)
    try:
        s, out = new_session()
        worker.open_session(s).result(WAIT_S)
        worker.put(s, FrameItem(frame_id="array", data=rgb_frame()))
        worker.put(s, FrameItem(frame_id="camera", data=rgb_frame(), decode_s=0.25))  # decoded by an RTSP reader
        array, camera = out.get(timeout=WAIT_S), out.get(timeout=WAIT_S)
        assert array.step.timings_s["decode"] == 0.0
        assert camera.step.timings_s["decode"] == 0.25
    finally:
        worker.stop()
