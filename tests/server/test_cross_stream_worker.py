"""The device worker's cross-stream batching (`cross_stream_batch`): a lane hands the head frames of several of its
streams to one batched call, each stream gets what the serial worker gives it, and a bad frame or a stream that
cannot be batched does not disturb the others."""

from __future__ import annotations

import queue
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from model.checkpoint import load_checkpoint
from server.metrics import Metrics
from server.worker import DeviceWorker, FrameError, FrameItem, FrameResult, StreamSession
from server.worker import frame_processing

pytestmark = pytest.mark.filterwarnings("ignore:There is a performance drop:UserWarning")  # SDPA under vmap on CPU


@pytest.fixture
def model(tiny_checkpoint: Path):
    return load_checkpoint(tiny_checkpoint)


def _frames(stream: int, n: int) -> list[np.ndarray]:
    g = np.random.default_rng(stream)
    return [g.integers(0, 256, (64, 80, 3), dtype=np.uint8) for _ in range(n)]


def _run(model, tmp_path: Path, batch: int, presets: list[str], clips: list[list], pending: list | None = None) -> list[list]:
    """Each stream's deliveries when all streams' frames are queued while the lane is held, then released.
    `pending` gets whether each adapter has a step pending once the last round is done."""
    worker = DeviceWorker(model, Metrics(), max_streams=8, max_state_memory=10**9, states_dir=tmp_path / f"s{batch}",
                          lanes=1, cross_stream_batch=batch)
    worker.start()
    try:
        outs, sessions = [], []
        for preset in presets:
            out: queue.Queue = queue.Queue()
            s = StreamSession("ws", "semantic", "online", preset, "block", 8, out.put)
            worker.open_session(s).result(10)
            outs.append(out)
            sessions.append(s)
        got: list[list] = [[] for _ in presets]
        for t in range(len(clips[0])):
            release = threading.Event()
            held = worker.scheduler.submit(release.wait, lane=0)  # the lane waits: every stream's frame t is queued
            for s, clip in zip(sessions, clips):
                assert worker.put(s, FrameItem(frame_id=t, data=clip[t]), timeout=5)
            release.set()
            held.result(5)
            for out, stream in zip(outs, got):  # every stream's frame t done before t + 1 is queued: same rounds
                stream.append(out.get(timeout=60))
        if pending is not None:
            pending += worker.scheduler.submit(lambda: [s.adapter.pending is not None for s in sessions], lane=0).result(5)
        return got
    finally:
        worker.stop()


def _batched_calls(monkeypatch) -> list[int]:
    sizes: list[int] = []
    real = frame_processing.step_many

    def counting(adapters, frames):
        sizes.append(len(adapters))
        return real(adapters, frames)

    monkeypatch.setattr(frame_processing, "step_many", counting)
    return sizes


def test_a_batched_lane_gives_each_stream_its_serial_results(model, tmp_path, monkeypatch) -> None:
    clips = [_frames(i, 3) for i in range(3)]
    serial = _run(model, tmp_path, 1, ["default"] * 3, clips)
    sizes = _batched_calls(monkeypatch)
    pending: list[bool] = []
    batched = _run(model, tmp_path, 4, ["default"] * 3, clips, pending)
    assert sizes == [3, 3, 3]  # one call per round, all three streams in it
    assert pending == [False] * 3  # the pipelined steps were taken after the results, not left to the next frame
    for want_stream, got_stream in zip(serial, batched):
        for want, got in zip(want_stream, got_stream):
            assert isinstance(got, FrameResult) and got.frame_id == want.frame_id
            torch.testing.assert_close(got.step.logits.class_logits, want.step.logits.class_logits, atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(got.step.logits.mask_logits, want.step.logits.mask_logits, atol=1e-4, rtol=1e-4)
            assert (got.step.ttt_record()["loss"] or 0.0) == pytest.approx(want.step.ttt_record()["loss"] or 0.0, abs=1e-5)
            assert np.array_equal(got.step.result.label_map.numpy(), want.step.result.label_map.numpy())
    assert any(r.step.ttt_record()["steps_taken"] for stream in batched for r in stream)  # they adapted


def test_bad_frames_and_unbatchable_streams_leave_the_batch_alone(model, tmp_path, monkeypatch) -> None:
    sizes = _batched_calls(monkeypatch)
    clips = [_frames(i, 2) for i in range(4)]
    clips[1][1] = b"not an image"
    got = _run(model, tmp_path, 4, ["default", "default", "default", "fast"], clips)
    assert isinstance(got[1][1], FrameError) and got[1][1].code == "bad_image"
    assert all(isinstance(r, FrameResult) for i, stream in enumerate(got) for r in stream if (i, r.frame_id) != (1, 1))
    assert sizes == [3, 2]  # `fast` differs in configuration: it ran alone; the bad frame left its round's call


def test_cross_stream_batching_is_off_unless_set(monkeypatch) -> None:
    from server.settings import Settings

    monkeypatch.delenv("M2F_WORKER_CROSS_STREAM_BATCH", raising=False)
    assert Settings().worker.cross_stream_batch == 1
    monkeypatch.setenv("M2F_WORKER_CROSS_STREAM_BATCH", "4")
    assert Settings().worker.cross_stream_batch == 4


def test_a_failing_batched_call_fails_that_rounds_frames_only(model, tmp_path, monkeypatch) -> None:
    real = frame_processing.step_many
    calls: list[int] = []

    def first_call_fails(adapters, frames):
        calls.append(len(adapters))
        if len(calls) == 1:
            raise RuntimeError("device lost")
        return real(adapters, frames)

    monkeypatch.setattr(frame_processing, "step_many", first_call_fails)
    got = _run(model, tmp_path, 4, ["default"] * 3, [_frames(i, 2) for i in range(3)])
    assert [type(stream[0]) for stream in got] == [FrameError] * 3
    assert all(stream[0].code == "adapter_error" and "device lost" in stream[0].message for stream in got)
    assert all(isinstance(stream[1], FrameResult) for stream in got) and calls == [3, 3]  # the streams go on
