"""The asynchronous schedule through the real DeviceWorker: the lanes only predict, the worker's one step executor
takes the steps; every frame is delivered, even while a step is held; skipped and failed steps reach the frames'
records and /metrics; controls run in order on a stream whose steps are in the background."""

from __future__ import annotations

import queue
import threading
from pathlib import Path
from typing import Any

import pytest

from model.checkpoint import load_checkpoint
from server.events import ControlReply
from server.metrics import Metrics
from server.worker import DeviceWorker, FrameItem, FrameResult, StreamSession
from server.worker.device_worker import scheduled_adapter_factory
from tests.server.svc_helpers import rgb_frame

WAIT = 120.0  # a bound on every wait, so that a broken worker fails a test instead of hanging it


@pytest.fixture
def model(tiny_checkpoint: Path):
    return load_checkpoint(tiny_checkpoint)


class Built:
    """The adapters the worker built, with `finish_pending` calls counted and their steps optionally held on an
    Event (`hold`) or made to raise (`explode`)."""

    def __init__(self) -> None:
        self.adapters: list[Any] = []
        self.finish_calls = 0
        self.hold = threading.Event()
        self.hold.set()
        self.step_started = threading.Event()
        self.explode = False

    def factory(self, model, method: str, preset: str, seed: int):
        adapter = scheduled_adapter_factory("async")(model, method, preset, seed)
        real = adapter.adapt

        def adapt(stats, view=None):
            self.step_started.set()
            assert self.hold.wait(WAIT)
            if self.explode:
                raise RuntimeError("step exploded")
            real(stats, view)

        def finish_pending() -> None:
            self.finish_calls += 1

        adapter.adapt = adapt
        adapter.finish_pending = finish_pending
        self.adapters.append(adapter)
        return adapter


def make_worker(model, tmp_path: Path, built: Built, metrics: Metrics, lanes: int = 2) -> DeviceWorker:
    worker = DeviceWorker(model, metrics, max_streams=8, max_state_memory=10**10, states_dir=tmp_path / "states",
                          lanes=lanes, adapter_factory=built.factory)
    worker.start()
    return worker


def open_stream(worker: DeviceWorker) -> tuple[StreamSession, queue.Queue]:
    out: queue.Queue = queue.Queue()
    s = StreamSession("ws", "semantic", "online", "default", "block", 8, out.put)
    worker.open_session(s).result(WAIT)
    return s, out


def send(worker: DeviceWorker, s: StreamSession, out: queue.Queue, i: int) -> FrameResult:
    assert worker.put(s, FrameItem(frame_id=i, data=rgb_frame(20 * i, (96, 128))), timeout=WAIT)
    got = out.get(timeout=WAIT)
    assert isinstance(got, FrameResult), got
    return got


def counter(metrics: Metrics, name: str) -> float:
    return metrics.registry.get_sample_value(f"{name}_total", {"source": "ws"}) or 0.0


def test_every_frame_of_several_async_streams_is_delivered_without_a_deferred_step(model, tmp_path) -> None:
    built, metrics = Built(), Metrics()
    worker = make_worker(model, tmp_path, built, metrics)
    try:
        streams = [open_stream(worker) for _ in range(3)]
        for s, _ in streams:
            for i in range(6):
                assert worker.put(s, FrameItem(frame_id=i, data=rgb_frame(20 * i, (96, 128))), timeout=WAIT)
        for s, out in streams:
            got = [out.get(timeout=WAIT) for _ in range(6)]
            assert [type(g) for g in got] == [FrameResult] * 6
            assert [g.frame_id for g in got] == list(range(6))
            assert s.steps_in_background and s.errors == 0
        assert built.finish_calls == 0  # the lanes never take (or wait for) a step
        executors = {id(a._async.executor) for a in built.adapters}
        assert executors == {id(worker.step_executor())}  # one executor for the worker's streams
        for a in built.adapters:
            assert a._async.steps.flush(WAIT)
        assert worker.step_executor().alive
    finally:
        worker.stop()
    assert not worker.step_executor().alive  # stopped with the worker


def test_frames_are_served_while_a_step_is_held_and_the_skipped_steps_reach_the_records_and_metrics(
    model, tmp_path
) -> None:
    built, metrics = Built(), Metrics()
    built.hold.clear()
    worker = make_worker(model, tmp_path, built, metrics, lanes=1)
    try:
        s, out = open_stream(worker)
        results = [send(worker, s, out, 0)]
        assert built.step_started.wait(WAIT)  # frame 0's step is on the executor, held
        results += [send(worker, s, out, i) for i in (1, 2, 3)]  # delivered while it is held
        skipped = [r.step.record()["ttt"]["steps_skipped"] for r in results]
        assert skipped == [0, 0, 1, 1]  # 2 supersedes 1's queued step, 3 supersedes 2's
        assert counter(metrics, "m2f_ttt_steps_skipped") == 2.0
        built.hold.set()
        assert built.adapters[0]._async.steps.flush(WAIT)
        assert built.adapters[0]._async.published.version == 2  # frame 0's step, then frame 3's
    finally:
        built.hold.set()
        worker.stop()


def test_a_failing_step_is_counted_in_the_record_and_metrics_and_its_frames_are_served(model, tmp_path) -> None:
    built, metrics = Built(), Metrics()
    built.explode = True
    worker = make_worker(model, tmp_path, built, metrics, lanes=1)
    try:
        s, out = open_stream(worker)
        send(worker, s, out, 0)
        assert built.adapters[0]._async.steps.flush(WAIT)
        second = send(worker, s, out, 1)
        assert second.step.record()["ttt"]["step_errors"] == 1 and s.errors == 0
        assert counter(metrics, "m2f_ttt_step_errors") >= 1.0
        assert counter(metrics, "m2f_frame_errors") == 0.0
    finally:
        worker.stop()


def test_checkpoint_restore_and_reset_of_an_async_stream_run_in_order_with_its_frames(model, tmp_path) -> None:
    built, metrics = Built(), Metrics()
    worker = make_worker(model, tmp_path, built, metrics, lanes=1)
    try:
        s, out = open_stream(worker)
        for i in range(3):
            send(worker, s, out, i)
        saved = worker.checkpoint(s).result(WAIT)
        assert isinstance(out.get(timeout=WAIT), ControlReply)
        assert saved["frames"] == 3
        send(worker, s, out, 3)
        restored = worker.restore(s, saved["checkpoint_id"]).result(WAIT)
        assert isinstance(out.get(timeout=WAIT), ControlReply) and restored["checkpoint_id"] == saved["checkpoint_id"]
        probe = worker.control(s, "probe", lambda s: {"frames": s.adapter.state_dict()["frame_index"]}, notify=False)
        assert probe.result(WAIT) == {"frames": 3}  # the checkpoint's stream, not the one after frame 3
        worker.reset(s).result(WAIT)
        assert isinstance(out.get(timeout=WAIT), ControlReply)
        assert s.adapter.predicts_with_theta0
        send(worker, s, out, 4)
        assert s.errors == 0
    finally:
        worker.stop()
