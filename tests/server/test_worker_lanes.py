"""Worker lanes (parallel threads, one model replica each) and the pipelined step after delivery."""

from __future__ import annotations

import queue
import threading
from pathlib import Path

import pytest
import torch

from model.checkpoint import load_checkpoint
from server.metrics import Metrics
from server.worker import DeviceWorker, FrameError, FrameItem, FrameResult, StreamSession
from tests.server.svc_helpers import FakeAdapter, fake_factory, rgb_frame


@pytest.fixture
def model(tiny_checkpoint: Path):
    return load_checkpoint(tiny_checkpoint)


def make_worker(model, tmp_path: Path, created: list, lanes: int, **kw) -> DeviceWorker:
    worker = DeviceWorker(
        model, Metrics(), max_streams=8, max_state_memory=10**9, states_dir=tmp_path / "states", lanes=lanes,
        adapter_factory=fake_factory(created=created, **kw),
    )
    worker.start()
    return worker


def open_stream(worker: DeviceWorker, deliver=None) -> tuple[StreamSession, queue.Queue]:
    out: queue.Queue = queue.Queue()
    s = StreamSession("ws", "semantic", "online", "default", "block", 4, deliver or out.put)
    worker.open_session(s).result(5)
    return s, out


def test_streams_spread_over_lanes_each_on_its_own_thread_and_model_replica(model, tmp_path):
    created: list[FakeAdapter] = []
    worker = make_worker(model, tmp_path, created, lanes=2)
    try:
        streams = [open_stream(worker) for _ in range(4)]
        assert sorted(s.lane for s, _ in streams) == [0, 0, 1, 1]
        assert created[0].model is not created[1].model  # functional_call swaps tensors: one replica per lane
        assert {id(a.model) for a in created} == {id(m) for m in worker.models}
        for s, _ in streams:
            for i in range(5):
                assert worker.put(s, FrameItem(frame_id=i, data=rgb_frame(10 * i)))
        for s, out in streams:
            assert [out.get(timeout=10).frame_id for _ in range(5)] == list(range(5))  # in order per stream
        by_lane: dict[int, set[int]] = {}
        for (s, _), adapter in zip(streams, created):
            assert len(adapter.thread_ids) == 1  # one writer per stream
            by_lane.setdefault(s.lane, set()).update(adapter.thread_ids)
        assert len(by_lane[0]) == len(by_lane[1]) == 1 and by_lane[0] != by_lane[1]
        # a closed stream frees its lane's slot: the next stream goes there
        lane = streams[0][0].lane
        worker.close_session(streams[0][0]).result(5)
        assert open_stream(worker)[0].lane == lane
    finally:
        worker.stop()


def test_lanes_run_streams_at_the_same_time(model, tmp_path):
    """Two streams on two lanes are inside `step` together: each waits on a barrier only the other can pass."""
    barrier = threading.Barrier(2, timeout=5)
    created: list[FakeAdapter] = []
    worker = make_worker(model, tmp_path, created, lanes=2)
    try:
        streams = [open_stream(worker) for _ in range(2)]
        for adapter in created:
            inner = adapter.step
            adapter.step = lambda frame, inner=inner: (barrier.wait(), inner(frame))[1]  # type: ignore[method-assign]
        for s, _ in streams:
            worker.put(s, FrameItem(frame_id=0, data=rgb_frame(5)))
        for _, out in streams:
            assert isinstance(out.get(timeout=10), FrameResult)  # a serial worker would break the barrier
    finally:
        worker.stop()


def test_the_deferred_step_runs_after_the_result_is_delivered(model, tmp_path):
    created: list[FakeAdapter] = []
    worker = make_worker(model, tmp_path, created, lanes=1)
    finished_at_delivery: list[int] = []
    out: queue.Queue = queue.Queue()

    def deliver(obj):
        if isinstance(obj, FrameResult):
            finished_at_delivery.append(created[0].finished)
        out.put(obj)

    try:
        s, _ = open_stream(worker, deliver)
        for i in range(3):
            worker.put(s, FrameItem(frame_id=i, data=rgb_frame(10 * i)))
        got = [out.get(timeout=10) for _ in range(3)]
        assert all(isinstance(r, FrameResult) for r in got)
        assert finished_at_delivery == [0, 1, 2]  # frame n's step is taken after its result left
        created[0].fail_pending = True
        worker.put(s, FrameItem(frame_id=3, data=rgb_frame(40)))
        result, error = out.get(timeout=10), out.get(timeout=10)
        assert isinstance(result, FrameResult) and isinstance(error, FrameError)
        assert error.code == "adapter_error" and "after frame 3" in error.message
        created[0].fail_pending = False
        worker.put(s, FrameItem(frame_id=4, data=rgb_frame(50)))
        assert isinstance(out.get(timeout=10), FrameResult)  # the stream goes on
    finally:
        worker.stop()


def test_lanes_must_be_positive(model, tmp_path):
    with pytest.raises(ValueError, match="lanes"):
        DeviceWorker(model, Metrics(), max_streams=1, max_state_memory=1, states_dir=tmp_path, lanes=0)


def test_real_adapters_on_two_lanes_match_the_serial_worker(tiny_checkpoint, tmp_path):
    """Per-stream results do not depend on how many lanes run them (same seeds, same frames)."""
    frames = [rgb_frame(20 * i + 7) for i in range(3)]

    def run(lanes: int) -> list[list[torch.Tensor]]:
        model = load_checkpoint(tiny_checkpoint)
        worker = DeviceWorker(model, Metrics(), max_streams=4, max_state_memory=10**10,
                              states_dir=tmp_path / f"s{lanes}", lanes=lanes)
        worker.start()
        try:
            streams = [open_stream(worker) for _ in range(2)]
            for k, (s, _) in enumerate(streams):
                for i, f in enumerate(frames):
                    worker.put(s, FrameItem(frame_id=i, data=f if k == 0 else f[::-1].copy()))
            got = [[out.get(timeout=60) for _ in frames] for _, out in streams]
            # real TTT steps, not skipped ones (a pipelined preset reports frame t's step with frame t + 1)
            assert all(sum(r.step.stats.steps_taken for r in rs) >= len(frames) - 1 for rs in got)
            return [[r.step.logits.mask_logits for r in rs] for rs in got]
        finally:
            worker.stop()

    serial, parallel = run(1), run(2)
    for a, b in zip(serial, parallel):
        for x, y in zip(a, b):
            torch.testing.assert_close(x, y)


def test_default_layout_is_a_single_threaded_lane_per_core_on_cpu_and_one_lane_on_cuda():
    from server.worker.layout import MAX_AUTO_LANES, worker_layout

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert worker_layout(cpu, None, None, cpus=2) == (2, 1)
    assert worker_layout(cpu, None, None, cpus=64) == (MAX_AUTO_LANES, 64 // MAX_AUTO_LANES)
    assert worker_layout(cpu, 1, None, cpus=8) == (1, None)  # one lane: torch's own default
    assert worker_layout(cpu, 3, 2, cpus=8) == (3, 2)  # what the settings say wins
    assert worker_layout(cuda, None, None, cpus=16) == (1, None)


def test_a_close_that_leaves_lanes_uneven_moves_a_stream_with_its_state(model, tmp_path):
    created: list[FakeAdapter] = []
    worker = make_worker(model, tmp_path, created, lanes=2)
    try:
        streams = [open_stream(worker) for _ in range(4)]  # lanes 0, 1, 0, 1
        for s, out in streams:
            worker.put(s, FrameItem(frame_id=0, data=rgb_frame(40)))
            assert isinstance(out.get(timeout=10), FrameResult)
        on_lane_0 = [(s, out) for s, out in streams if s.lane == 0]
        on_lane_1 = [s for s, _ in streams if s.lane == 1]
        totals = {s.id: s.adapter.total for s, _ in on_lane_0}
        for s in on_lane_1:
            worker.close_session(s).result(5)  # lane 1 empties: 2 vs 0, a move is queued on lane 0
        for s, out in on_lane_0:
            worker.put(s, FrameItem(frame_id=1, data=rgb_frame(60)))  # queued behind the move
            result = out.get(timeout=10)
            assert isinstance(result, FrameResult) and result.frame_id == 1  # no ControlReply for the move
        moved = [s for s, _ in on_lane_0 if s.lane == 1]
        assert len(moved) == 1 and len([s for s, _ in on_lane_0 if s.lane == 0]) == 1
        moving = moved[0]
        assert moving.adapter.model is worker.models[1]  # rebuilt on lane 1's replica ...
        # ... with its state: the running total carried over, plus the new frame's mean
        assert moving.adapter.total == pytest.approx(totals[moving.id] + float(rgb_frame(60).mean()), rel=1e-5)
        assert worker.balancer.load == [1, 1]
    finally:
        worker.stop()
