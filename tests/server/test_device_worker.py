"""DeviceWorker with fake adapters: admission, order, isolation of failures, controls, state I/O."""

from __future__ import annotations

import queue
import threading
from pathlib import Path

import pytest

from model.checkpoint import load_checkpoint
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
from tests.server.svc_helpers import FakeAdapter, fake_factory, png, rgb_frame


@pytest.fixture
def model(tiny_checkpoint: Path):
    return load_checkpoint(tiny_checkpoint)


def make_worker(model, tmp_path: Path, created: list | None = None, **kw) -> DeviceWorker:
    params = dict(
        max_streams=3,
        max_state_memory=10_000,
        states_dir=tmp_path / "states",
        adapter_factory=fake_factory(created=created, bytes_per_stream=kw.pop("bytes_per_stream", 1000)),
    )
    params.update(kw)
    worker = DeviceWorker(model, Metrics(), **params)
    worker.start()
    return worker


def open_stream(worker: DeviceWorker, task: str = "semantic", policy: str = "block", method: str = "online"):
    out: queue.Queue = queue.Queue()
    s = StreamSession("ws", task, method, "default", policy, 4, out.put, encodings=("png",))
    worker.open_session(s).result(5)
    return s, out


def results(out: queue.Queue, n: int) -> list:
    return [out.get(timeout=10) for _ in range(n)]


def test_frames_are_processed_in_order_on_one_thread_with_timings(model, tmp_path: Path) -> None:
    created: list[FakeAdapter] = []
    worker = make_worker(model, tmp_path, created)
    try:
        s, out = open_stream(worker, task="panoptic")
        for i in range(6):
            assert worker.put(s, FrameItem(frame_id=i, data=rgb_frame(10 * i)))
        got = results(out, 6)
        assert [r.frame_id for r in got] == list(range(6))
        assert all(isinstance(r, FrameResult) and r.task == "panoptic" for r in got)
        assert set(got[0].step.timings_s) >= {"queue", "decode", "ttt", "predict", "postprocess"}
        assert got[0].step.result.id_map.shape == (48, 64)
        assert len(created[0].thread_ids) == 1 and threading.get_ident() not in created[0].thread_ids
    finally:
        worker.stop()


def test_admission_refuses_by_count_and_by_memory(model, tmp_path: Path) -> None:
    worker = make_worker(model, tmp_path, max_streams=2, max_state_memory=2500)
    try:
        open_stream(worker)
        open_stream(worker)
        with pytest.raises(CapacityError, match="2 of 2 streams") as exc:
            open_stream(worker)
        assert exc.value.reason == "streams"
    finally:
        worker.stop()
    worker = make_worker(model, tmp_path, max_streams=5, max_state_memory=2500)
    try:
        open_stream(worker)
        open_stream(worker)
        with pytest.raises(CapacityError, match="not enough memory") as exc:
            open_stream(worker)
        assert exc.value.reason == "memory"
        assert worker.capacity()["reserved_bytes"] == 2000
    finally:
        worker.stop()


def test_closing_a_stream_frees_its_slot(model, tmp_path: Path) -> None:
    worker = make_worker(model, tmp_path, max_streams=1)
    try:
        s, out = open_stream(worker)
        worker.close_session(s, "bye").result(5)
        assert isinstance(out.get(timeout=5), SessionClosed)
        open_stream(worker)
    finally:
        worker.stop()


def test_unknown_method_is_a_value_error(model, tmp_path: Path) -> None:
    worker = make_worker(model, tmp_path)
    try:
        with pytest.raises(ValueError, match="unknown method"):
            open_stream(worker, method="nope")
    finally:
        worker.stop()


def test_a_failing_adapter_or_bad_image_only_hurts_its_own_stream(model, tmp_path: Path) -> None:
    worker = make_worker(model, tmp_path)
    try:
        a, out_a = open_stream(worker)
        b, out_b = open_stream(worker)
        poisoned = rgb_frame(50)
        poisoned[0, 0] = (1, 2, 3)
        worker.put(a, FrameItem(frame_id="poison", data=png(poisoned)))
        worker.put(a, FrameItem(frame_id="garbage", data=b"\xff\xd8\xff\x00not really a jpeg"))
        for i in range(3):
            worker.put(b, FrameItem(frame_id=i, data=rgb_frame(i)))
        worker.put(a, FrameItem(frame_id="ok", data=rgb_frame(7)))
        ra = results(out_a, 3)
        assert isinstance(ra[0], FrameError) and ra[0].code == "adapter_error" and "poisoned frame" in ra[0].message
        assert isinstance(ra[1], FrameError) and ra[1].code == "bad_image"
        assert isinstance(ra[2], FrameResult) and ra[2].frame_id == "ok"
        assert [r.frame_id for r in results(out_b, 3)] == [0, 1, 2]
        assert a.errors == 2 and b.errors == 0
    finally:
        worker.stop()


def test_controls_run_in_order_and_state_round_trips(model, tmp_path: Path) -> None:
    created: list[FakeAdapter] = []
    worker = make_worker(model, tmp_path, created)
    try:
        s, out = open_stream(worker)
        for i in range(3):
            worker.put(s, FrameItem(frame_id=i, data=rgb_frame(40)))
        ckpt = worker.checkpoint(s)
        worker.put(s, FrameItem(frame_id=3, data=rgb_frame(40)))
        reset = worker.reset(s)
        got = results(out, 6)
        assert [getattr(r, "frame_id", getattr(r, "name", None)) for r in got] == [0, 1, 2, "checkpoint", 3, "reset"]
        cid = ckpt.result(5)["checkpoint_id"]
        assert reset.result(5) == {"frames_before_reset": 4}
        assert created[0].total == 0.0
        restore = worker.restore(s, cid)
        assert restore.result(5)["frames"] == 3
        assert created[0].total == pytest.approx(3 * float(rgb_frame(40).mean()), rel=1e-4)
        bad = worker.restore(s, "../../etc/passwd")
        with pytest.raises(ValueError, match="checkpoint_id must be"):
            bad.result(5)
        reply = [out.get(timeout=5) for _ in range(2)][-1]
        assert isinstance(reply, ControlReply) and reply.error and "restore failed" in reply.error
    finally:
        worker.stop()


def test_stop_closes_every_session(model, tmp_path: Path) -> None:
    worker = make_worker(model, tmp_path)
    s, out = open_stream(worker)
    worker.stop()
    assert not worker.alive
    assert isinstance(out.get(timeout=5), SessionClosed)
    assert not worker.offer(s, FrameItem(frame_id=0, data=rgb_frame()))
