"""Device worker contract through its public API, with fake adapters and a config-only model (fast):
lifecycle (stop, daemon thread, torch threads), admission (early and on-worker refusals, figures), closing,
per-frame accounting (metrics, memory, timings), delivery failures, the state store, session stats, result size.

No sleeps: tests wait on Events, Futures and queues with timeouts; timings are only checked to be sane ranges
(non-negative, within the wall time of the test), never against a speed.
"""

from __future__ import annotations

import logging
import pickle
import queue
import struct
import threading
import time
import zlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from model.config import preset
from server.metrics import Metrics
from server.worker import (
    CapacityError,
    ControlReply,
    DeviceWorker,
    FrameError,
    FrameItem,
    FrameResult,
    SessionClosed,
    StreamSession,
)
from server.worker import stream_session as stream_session_module
from server.worker.admission import Admission
from server.worker.device_worker import default_adapter_factory
from server.worker.imaging import result_size
from server.worker.checkpoint_index import CheckpointRecord
from server.worker.state_store import STATE_FORMAT, StreamStateStore
from tests.server.svc_helpers import THING_IDS, FakeAdapter, png, rgb_frame

WAIT_S = 10


@pytest.fixture
def model() -> Any:
    """What the fake adapters and the post-processing read of a model: its config."""
    return SimpleNamespace(cfg=preset("tiny", thing_class_ids=THING_IDS))


class GatedAdapter(FakeAdapter):
    """A FakeAdapter whose `step` signals `entered` and then waits for `gate` (class-level, set per test)."""

    entered: threading.Event
    gate: threading.Event

    def step(self, frame: torch.Tensor):
        self.worker_thread = threading.current_thread()
        type(self).entered.set()
        assert type(self).gate.wait(WAIT_S)
        return super().step(frame)


class GrowingAdapter(FakeAdapter):
    """Memory grows by 500 bytes per frame; every second frame's step is rolled back."""

    def step(self, frame: torch.Tensor):
        result = super().step(frame)
        self.bytes += 500
        if len(self.seen) % 2 == 0:
            self.rollbacks += 1
            result.stats.rolled_back = True
        result.stats.rollbacks = self.rollbacks
        return result


def factory(cls: type = FakeAdapter, created: list | None = None, calls: list | None = None, bytes_: int = 1000):
    def make(model: Any, method: str, preset_name: str, seed: int) -> FakeAdapter:
        if calls is not None:
            calls.append((method, preset_name, seed))
        adapter = cls(model, num_classes=len(model.cfg.class_names), bytes=bytes_)
        if created is not None:
            created.append(adapter)
        return adapter

    return make


def worker_for(model: Any, tmp_path: Path, start: bool = True, **kw: Any) -> DeviceWorker:
    params: dict[str, Any] = {"max_streams": 3, "max_state_memory": 10_000, "states_dir": tmp_path / "states"}
    params.update(kw)
    params.setdefault("adapter_factory", factory())
    worker = DeviceWorker(model, Metrics(), **params)
    if start:
        worker.start()
    return worker


def new_session(source: str = "ws", policy: str = "block", queue_size: int = 4, deliver: Any = None):
    out: queue.Queue = queue.Queue()
    s = StreamSession(source, "semantic", "online", "default", policy, queue_size, deliver or out.put)
    return s, out


def sample(worker: DeviceWorker, name: str, **labels: str) -> float | None:
    return worker.metrics.registry.get_sample_value(name, labels)


def hold(worker: DeviceWorker, s: StreamSession) -> tuple[threading.Event, Any]:
    """Keep the worker busy in a control of `s` until the returned gate is set; returns (gate, its Future)."""
    entered, gate = threading.Event(), threading.Event()

    def run(sess: StreamSession) -> dict:
        entered.set()
        assert gate.wait(WAIT_S)
        return {}

    fut = worker.control(s, "hold", run)
    assert entered.wait(WAIT_S)
    return gate, fut


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (valid CRC; the pixel data is that of a 1x1 image)."""
    data = bytearray(png(rgb_frame(size=(1, 1))))
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr : ihdr + 17])))
    return bytes(data)


# ---- defaults and lifecycle ------------------------------------------------------------------------------------
def test_the_documented_defaults_pixel_limit_result_side_and_seed(model, tmp_path: Path) -> None:
    calls: list = []
    worker = DeviceWorker(
        model,
        Metrics(),
        max_streams=1,
        max_state_memory=10_000,
        states_dir=tmp_path,
        adapter_factory=factory(calls=calls),
    )
    worker.start()
    try:
        s, out = new_session()
        worker.open_session(s).result(WAIT_S)
        assert calls == [("online", "default", 0)]  # seed 0
        worker.put(s, FrameItem(frame_id="big", data=png_header(4097, 4096)))  # checked before decoding
        worker.put(s, FrameItem(frame_id="wide", data=rgb_frame(size=(4, 1280))))
        err, res = out.get(timeout=WAIT_S), out.get(timeout=WAIT_S)
        assert isinstance(err, FrameError) and err.code == "bad_image"
        assert "4097x4096" in err.message and "the limit is 16777216" in err.message  # 4096 * 4096
        assert isinstance(res, FrameResult) and tuple(res.step.result.label_map.shape) == (2, 640)  # long side 640
    finally:
        worker.stop()


def test_default_adapter_factory_refuses_methods_that_need_the_whole_video(model) -> None:
    with pytest.raises(ValueError, match="cannot run in the service"):
        default_adapter_factory(model, "offline_all_frames", "default", 0)


def test_stop_before_start_fails_pending_commands_at_once(model, tmp_path: Path) -> None:
    worker = worker_for(model, tmp_path, start=False)
    s, out = new_session()
    fut = worker.open_session(s)
    assert not fut.done()
    worker.stop()
    assert fut.done() and isinstance(fut.exception(), RuntimeError)
    assert "stopped" in str(fut.exception())
    assert out.empty() and not worker.alive


def test_stop_lets_the_running_frame_finish_then_closes_every_stream(model, tmp_path: Path) -> None:
    GatedAdapter.entered, GatedAdapter.gate = threading.Event(), threading.Event()
    created: list = []
    worker = worker_for(model, tmp_path, adapter_factory=factory(GatedAdapter, created))
    s, out = new_session()
    worker.open_session(s).result(WAIT_S)
    worker.put(s, FrameItem(frame_id=0, data=rgb_frame()))
    assert GatedAdapter.entered.wait(WAIT_S)  # the worker is inside frame 0
    worker.put(s, FrameItem(frame_id=1, data=rgb_frame()))
    worker.put(s, FrameItem(frame_id=2, data=rgb_frame()))
    other, _ = new_session()
    pending = worker.open_session(other)  # a command the worker never gets to: stop fails it ...
    pending.add_done_callback(lambda f: GatedAdapter.gate.set())  # ... which lets frame 0 finish
    worker.stop()
    assert isinstance(pending.exception(0), RuntimeError)
    assert not created[0].worker_thread.is_alive()  # stop() returned after the thread ended
    first, last = out.get(timeout=WAIT_S), out.get(timeout=WAIT_S)
    assert isinstance(first, FrameResult) and first.frame_id == 0
    assert isinstance(last, SessionClosed) and last.reason == "server shutting down"  # the last thing delivered
    assert out.empty()
    assert s.closed and s.stats()["queued"] == 0 and s.stats()["processed"] == 1
    assert not worker.offer(s, FrameItem(frame_id=3, data=rgb_frame()))
    assert sample(worker, "m2f_active_streams", source="ws") == 0


def test_the_worker_thread_is_a_daemon_and_owns_torch_threads_while_it_runs(model, tmp_path: Path) -> None:
    before = torch.get_num_threads()
    worker = worker_for(model, tmp_path, torch_threads=before + 1)
    try:
        s, _ = new_session()
        worker.open_session(s).result(WAIT_S)
        seen = worker.control(
            s, "probe", lambda sess: {"threads": torch.get_num_threads(), "daemon": threading.current_thread().daemon}
        ).result(WAIT_S)
        assert seen == {"threads": before + 1, "daemon": True}  # a forgotten worker never blocks the exit
        worker.stop()
        assert torch.get_num_threads() == before  # the caller thread's setting is untouched
    finally:
        worker.stop()
        torch.set_num_threads(before)


# ---- admission ---------------------------------------------------------------------------------------------------
def test_a_full_service_refuses_at_once_without_waiting_for_the_busy_worker(model, tmp_path: Path) -> None:
    worker = worker_for(model, tmp_path, max_streams=1)
    try:
        s, _ = new_session()
        worker.open_session(s).result(WAIT_S)
        gate, held = hold(worker, s)
        try:
            s2, _ = new_session()
            fut = worker.open_session(s2)
            assert fut.done(), "the refusal waited for the worker"
            assert isinstance(fut.exception(), CapacityError) and fut.exception().reason == "streams"
            assert sample(worker, "m2f_admission_refusals_total", reason="streams") == 1
        finally:
            gate.set()
        held.result(WAIT_S)
    finally:
        worker.stop()


def test_admission_is_rechecked_on_the_worker_before_an_adapter_is_built(model, tmp_path: Path) -> None:
    created: list = []
    worker = worker_for(model, tmp_path, start=False, max_streams=1, adapter_factory=factory(created=created))
    try:
        s1, _ = new_session()
        s2, _ = new_session()
        f1, f2 = worker.open_session(s1), worker.open_session(s2)  # both pass the early check: nothing open yet
        worker.start()
        assert f1.result(WAIT_S) is s1
        with pytest.raises(CapacityError) as exc:
            f2.result(WAIT_S)
        assert exc.value.reason == "streams"
        assert str(exc.value).startswith("the service is full: 1 of 1 streams are active")
        assert len(created) == 1  # no adapter (device memory) built for the refused stream
        assert worker.capacity() == {
            "streams": 1,
            "max_streams": 1,
            "reserved_bytes": 1000,
            "max_state_memory": 10_000,
            "available": False,
        }
    finally:
        worker.stop()


def _session(method: str = "online", reserved: int = 0) -> StreamSession:
    s = StreamSession("ws", "semantic", method, "default", "block", 2, lambda obj: None)
    s.reserved_bytes = reserved
    return s


def test_admission_reserve_refuses_a_full_slot_count_and_counts_memory_refusals() -> None:
    metrics = Metrics()
    adm = Admission(metrics, max_streams=1, max_state_memory=10_000)
    with pytest.raises(CapacityError) as exc:
        adm.reserve([_session(reserved=100)], _session(), FakeAdapter(bytes=100))
    assert exc.value.reason == "streams"
    assert str(exc.value) == "the service is full: 1 of 1 streams are active; try again later"
    adm = Admission(metrics, max_streams=5, max_state_memory=2_000)
    with pytest.raises(CapacityError) as exc:
        adm.reserve([_session(reserved=1_500)], _session(), FakeAdapter(bytes=600))
    assert exc.value.reason == "memory" and str(exc.value).startswith("not enough memory for another stream")
    assert metrics.registry.get_sample_value("m2f_admission_refusals_total", {"reason": "memory"}) == 1
    assert metrics.registry.get_sample_value("m2f_admission_refusals_total", {"reason": "streams"}) == 1


def test_admission_of_stateless_adapters_reserves_nothing() -> None:
    adm = Admission(Metrics(), max_streams=5, max_state_memory=1_000)
    s = _session()
    assert adm.reserve([], s, FakeAdapter(bytes=0)) == 0
    adm.observe(s, 0)
    assert adm.reserve([s], _session(), FakeAdapter(bytes=0)) == 0
    assert adm.capacity([_session(reserved=1_000)])["available"] is True  # measured: stateless streams fit
    assert Admission(Metrics(), 5, 0).capacity([])["available"] is True  # nothing measured: assume nothing


def test_capacity_figures_use_the_largest_measured_footprint() -> None:
    adm = Admission(Metrics(), max_streams=3, max_state_memory=1_000)
    a = _session(reserved=1_000)
    assert adm.capacity([a]) == {
        "streams": 1,
        "max_streams": 3,
        "reserved_bytes": 1_000,
        "max_state_memory": 1_000,
        "available": True,
    }  # nothing measured yet: the next stream's size is unknown
    adm.observe(a, 500)
    assert a.reserved_bytes == 1_000 and a.memory_bytes == 500
    assert adm.capacity([a])["available"] is False  # 1000 reserved + a typical 500 > 1000
    b = _session(reserved=400)
    assert adm.capacity([b])["available"] is True  # 400 + 500 <= 1000
    assert adm.capacity([_session(reserved=600)])["available"] is False  # 600 + 500 > 1000


# ---- closing -----------------------------------------------------------------------------------------------------
def test_close_session_closes_the_queue_at_once_and_the_stream_leaves_the_metrics(model, tmp_path: Path) -> None:
    worker = worker_for(model, tmp_path)
    try:
        s, out = new_session()
        worker.open_session(s).result(WAIT_S)
        assert sample(worker, "m2f_stream_state_bytes", stream=s.id) == 1000  # from admission, before any frame
        assert sample(worker, "m2f_active_streams", source="ws") == 1
        gate, held = hold(worker, s)
        try:
            worker.put(s, FrameItem(frame_id=0, data=rgb_frame()))
            closed = worker.close_session(s, "bye")
            # before the worker gets to the close: the queue is shut and emptied, producers are refused
            assert s.closed and s.stats()["queued"] == 0
            assert not worker.offer(s, FrameItem(frame_id=1, data=rgb_frame()))
            late = worker.reset(s)
            assert late.done() and isinstance(late.exception(), RuntimeError) and "is closed" in str(late.exception())
        finally:
            gate.set()
        closed.result(WAIT_S)
        held.result(WAIT_S)
        got = [out.get(timeout=WAIT_S) for _ in range(2)]
        assert isinstance(got[0], ControlReply) and got[0].name == "hold"
        assert isinstance(got[1], SessionClosed) and got[1].reason == "bye"
        assert out.empty() and s.processed == 0
        assert sample(worker, "m2f_stream_state_bytes", stream=s.id) is None
        assert sample(worker, "m2f_active_streams", source="ws") == 0
        assert worker.capacity()["streams"] == 0
    finally:
        worker.stop()


def test_a_control_discarded_by_closing_fails_its_future(model, tmp_path: Path) -> None:
    worker = worker_for(model, tmp_path)
    try:
        s, _ = new_session()
        worker.open_session(s).result(WAIT_S)
        gate, _ = hold(worker, s)
        queued = worker.reset(s)  # waits behind the held control
        closed = worker.close_session(s)
        gate.set()
        closed.result(WAIT_S)
        assert queued.done()
        with pytest.raises(RuntimeError, match="closed before reset ran"):
            queued.result(0)
    finally:
        worker.stop()


# ---- frames: accounting, metrics, timings ---------------------------------------------------------------------
def test_each_frame_moves_counters_memory_and_metrics(model, tmp_path: Path) -> None:
    worker = worker_for(model, tmp_path, adapter_factory=factory(GrowingAdapter))
    try:
        s, out = new_session()
        worker.open_session(s).result(WAIT_S)
        t0 = time.perf_counter()
        worker.put(s, FrameItem(frame_id=0, data=rgb_frame(), decode_s=0.5))
        worker.put(s, FrameItem(frame_id=1, data=png(rgb_frame())))
        r0, r1 = out.get(timeout=WAIT_S), out.get(timeout=WAIT_S)
        wall = time.perf_counter() - t0
        assert isinstance(r0, FrameResult) and isinstance(r1, FrameResult)
        assert (r0.index, r1.index) == (0, 1)
        assert (r0.memory_bytes, r1.memory_bytes) == (1500, 2000)  # measured after each step
        for r in (r0, r1):
            assert 0.0 <= r.step.timings_s["queue"] <= wall
        assert 0.5 <= r0.step.timings_s["decode"] <= 0.5 + wall  # the source's decoding plus ours (none: RGB)
        assert 0.0 <= r1.step.timings_s["decode"] <= wall  # decoded here only
        stats = s.stats()
        assert stats["processed"] == 2 and stats["rollbacks"] == 1
        assert stats["memory_bytes"] == 2000 and stats["reserved_bytes"] == 2000  # the reservation follows
        assert stats["last_loss"] == pytest.approx(0.5)
        assert worker.capacity()["reserved_bytes"] == 2000
        assert sample(worker, "m2f_stream_state_bytes", stream=s.id) == 2000
        assert sample(worker, "m2f_frames_processed_total", source="ws") == 2
        assert sample(worker, "m2f_ttt_rollbacks_total", source="ws") == 1
        assert sample(worker, "m2f_stage_seconds_count", stage="queue") == 2
        assert sample(worker, "m2f_stage_seconds_count", stage="decode") == 2
        worker.put(s, FrameItem(frame_id="bad", data=b"not an image"))
        err = out.get(timeout=WAIT_S)
        assert isinstance(err, FrameError) and err.code == "bad_image"
        assert s.stats()["errors"] == 1 and sample(worker, "m2f_frame_errors_total", source="ws") == 1
        assert sample(worker, "m2f_frames_processed_total", source="ws") == 2
    finally:
        worker.stop()


def test_a_raising_consumer_is_logged_and_the_worker_goes_on(model, tmp_path: Path, caplog) -> None:
    out: queue.Queue = queue.Queue()

    def deliver(obj: Any) -> None:
        if isinstance(obj, FrameResult) and obj.frame_id == 0:
            raise ConnectionError("consumer gone")
        out.put(obj)

    worker = worker_for(model, tmp_path)
    try:
        s, _ = new_session(deliver=deliver)
        worker.open_session(s).result(WAIT_S)
        with caplog.at_level(logging.WARNING, logger="server.worker.device_worker"):
            worker.put(s, FrameItem(frame_id=0, data=rgb_frame()))
            worker.put(s, FrameItem(frame_id=1, data=rgb_frame()))
            r = out.get(timeout=WAIT_S)
        assert isinstance(r, FrameResult) and r.frame_id == 1 and worker.alive
        failed = [rec for rec in caplog.records if rec.getMessage() == "delivery to a stream's consumer failed"]
        assert len(failed) == 1 and failed[0].exc_info and isinstance(failed[0].exc_info[1], ConnectionError)
    finally:
        worker.stop()


def test_lifecycle_and_failures_are_logged(model, tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="server.worker"):
        worker = worker_for(model, tmp_path)
        s, out = new_session()
        worker.open_session(s).result(WAIT_S)
        poisoned = rgb_frame(50)
        poisoned[0, 0] = (1, 2, 3)
        worker.put(s, FrameItem(frame_id="poison", data=poisoned))
        assert isinstance(out.get(timeout=WAIT_S), FrameError)
        worker.checkpoint(s).result(WAIT_S)
        with pytest.raises(LookupError):
            worker.restore(s, "missing").result(WAIT_S)
        worker.close_session(s, "bye").result(WAIT_S)
        worker.stop()
    messages = [r.getMessage() for r in caplog.records]
    for expected in (
        "device worker started",
        "stream opened",
        "adapter step failed",
        "stream checkpoint",
        "stream control failed",
        "stream closed",
        "device worker stopped",
    ):
        assert expected in messages
    step_failed = next(r for r in caplog.records if r.getMessage() == "adapter step failed")
    assert step_failed.levelno == logging.ERROR and step_failed.exc_info


# ---- state store ---------------------------------------------------------------------------------------------------
_EXECUTED: list[str] = []


def _mark(tag: str) -> str:
    _EXECUTED.append(tag)
    return tag


class _Payload:
    """Pickles to a call of `_mark`: loading it with full unpickling would run code."""

    def __reduce__(self):
        return (_mark, ("unpickled",))


def _stored_session() -> StreamSession:
    s = _session()
    s.adapter = FakeAdapter()
    return s


def test_checkpoints_go_into_a_states_dir_whose_parents_do_not_exist_yet(tmp_path: Path) -> None:
    store = StreamStateStore(tmp_path / "not" / "yet" / "states")
    s = _stored_session()
    s.processed = 3
    saved = store.save(s)
    assert saved["frames"] == 3 and saved["bytes"] > 0 and saved["checkpoint_id"].startswith(s.id)
    assert store.path(saved["checkpoint_id"], lambda owner: owner == "").stat().st_size == saved["bytes"]
    assert store.restore(_stored_session(), saved["checkpoint_id"]) == {
        "checkpoint_id": saved["checkpoint_id"],
        "frames": 3,
    }


def _planted(tmp_path: Path, checkpoint_id: str, blob: Any) -> StreamStateStore:
    """A file planted in the states dir as if it were a checkpoint of the anonymous owner (sidecar included)."""
    torch.save(blob, tmp_path / f"{checkpoint_id}.pt")
    record = CheckpointRecord(
        checkpoint_id=checkpoint_id, owner="", stream_id="planted", bytes=1, frames=1, method="online",
        preset="default", created=0.0,
    )
    (tmp_path / f"{checkpoint_id}.json").write_text(record.model_dump_json())
    return StreamStateStore(tmp_path)


def test_restore_never_unpickles_code(tmp_path: Path) -> None:
    blob = {
        "format": STATE_FORMAT,
        "method": "online",
        "preset": "default",
        "frames": 1,
        "state": {"total": torch.tensor(1.0), "n": 1, "x": _Payload()},
    }
    store = _planted(tmp_path, "evil", blob)
    _EXECUTED.clear()
    with pytest.raises(pickle.UnpicklingError):
        store.restore(_stored_session(), "evil")
    assert _EXECUTED == []


@pytest.mark.parametrize("blob", [{"format": "something-else/1", "state": {}}, ["not", "a", "dict"]])
def test_restore_refuses_files_that_are_not_stream_states(tmp_path: Path, blob: Any) -> None:
    with pytest.raises(ValueError, match="is not a stream state"):
        _planted(tmp_path, "other", blob).restore(_stored_session(), "other")


def test_restore_names_an_older_state_format_instead_of_failing_inside_the_optimizer(tmp_path: Path) -> None:
    blob = {"format": "m2f-ttt-stream-state/1", "method": "online", "preset": "default", "frames": 1, "state": {}}
    with pytest.raises(ValueError, match="older version.*start the stream afresh"):
        _planted(tmp_path, "old", blob).restore(_stored_session(), "old")


# ---- session stats, result size -------------------------------------------------------------------------------
def test_a_new_session_reports_zero_counters_and_its_uptime(monkeypatch) -> None:
    clock = iter([1000.0, 1001.23456])
    monkeypatch.setattr(stream_session_module, "time", SimpleNamespace(time=lambda: next(clock)))
    s = StreamSession("rtsp", "panoptic", "online", "default", "latest", 2, lambda obj: None, session_id="cam")
    assert s.stats() == {
        "stream_id": "cam",
        "source": "rtsp",
        "task": "panoptic",
        "method": "online",
        "preset": "default",
        "policy": "latest",
        "queue_size": 2,
        "queued": 0,
        "received": 0,
        "processed": 0,
        "dropped": 0,
        "errors": 0,
        "rollbacks": 0,
        "memory_bytes": 0,
        "reserved_bytes": 0,
        "last_loss": None,
        "uptime_s": 1.235,
        "score_threshold": 0.0,
        "min_area": 0,
    }


def test_result_size_never_reaches_zero_on_thin_frames() -> None:
    assert result_size(1, 2000, 640) == (1, 640)
    assert result_size(2000, 1, 640) == (640, 1)
    assert result_size(3, 1280, 640) == (2, 640)  # 1.5 rounds to 2
    assert result_size(100, 200, 640) == (100, 200)  # never scaled up


def test_a_control_its_caller_cancelled_does_not_run(model, tmp_path: Path) -> None:
    created: list = []
    worker = worker_for(model, tmp_path, adapter_factory=factory(created=created))
    try:
        s, out = new_session()
        worker.open_session(s).result(WAIT_S)
        gate, _ = hold(worker, s)
        queued = worker.reset(s)
        assert queued.cancel()  # e.g. a REST caller's timeout: it has already answered its client
        gate.set()
        replies = []
        while len(replies) < 2:
            item = out.get(timeout=WAIT_S)
            if isinstance(item, ControlReply):
                replies.append(item)
        assert replies[1].name == "reset" and "cancelled by its caller" in (replies[1].error or "")
        assert created[0].resets == 0  # the stream was not reset behind the caller's back
    finally:
        worker.stop()


def test_stop_tolerates_commands_their_callers_cancelled(model, tmp_path: Path) -> None:
    worker = worker_for(model, tmp_path, start=False)
    s, _ = new_session()
    pending = worker.open_session(s)
    assert pending.cancel()
    worker.stop()  # must not raise InvalidStateError on the cancelled Future
    assert pending.cancelled()
