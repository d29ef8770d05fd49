"""Client images are decoded off the worker lanes, from the moment they are queued; a frame dropped before its
decode started is never decoded; bad images still come back as `bad_image` for that frame only."""

from __future__ import annotations

import queue
import threading
from pathlib import Path

import pytest

from model.checkpoint import load_checkpoint
from server.metrics import Metrics
from server.worker import DeviceWorker, FrameError, FrameItem, FrameResult, StreamSession
import server.worker.decode_ahead as decode_ahead
from tests.server.svc_helpers import fake_factory, png as png_of, rgb_frame


def png(value: int) -> bytes:
    return png_of(rgb_frame(value))


@pytest.fixture
def model(tiny_checkpoint: Path):
    return load_checkpoint(tiny_checkpoint)


@pytest.fixture
def decode_log(monkeypatch) -> list[tuple[bytes, str]]:
    """Every decode: (its bytes, the name of the thread that ran it)."""
    log: list[tuple[bytes, str]] = []
    real = decode_ahead.decode_image

    def recording(data: bytes, max_pixels: int):
        log.append((data, threading.current_thread().name))
        return real(data, max_pixels)

    monkeypatch.setattr(decode_ahead, "decode_image", recording)
    return log


def _worker(model, tmp_path: Path, decode_threads: int, start: bool = True) -> DeviceWorker:
    worker = DeviceWorker(
        model,
        Metrics(),
        max_streams=3,
        max_state_memory=10_000,
        states_dir=tmp_path / "states",
        decode_threads=decode_threads,
        adapter_factory=fake_factory(bytes_per_stream=1000),
    )
    if start:
        worker.start()
    return worker


@pytest.mark.parametrize(("threads", "decoder_prefix"), [(1, "frame-decode"), (0, "device-worker-")])
def test_images_are_decoded_on_the_decode_threads_not_the_lane(model, tmp_path, decode_log, threads, decoder_prefix):
    worker = _worker(model, tmp_path, threads)
    try:
        out: queue.Queue = queue.Queue()
        s = StreamSession("ws", "semantic", "online", "default", "block", 4, out.put)
        worker.open_session(s).result(5)
        images = [png(40 + i) for i in range(3)]
        for i, data in enumerate(images):
            assert worker.put(s, FrameItem(frame_id=i, data=data))
        got = [out.get(timeout=10) for _ in range(3)]
        assert all(isinstance(r, FrameResult) for r in got) and [r.frame_id for r in got] == [0, 1, 2]
        assert [d for d, _ in decode_log] == images  # each frame decoded exactly once
        assert all(name.startswith(decoder_prefix) for _, name in decode_log)
        assert all(r.step.timings_s["decode"] > 0 for r in got)
    finally:
        worker.stop()


def test_a_frame_dropped_before_its_decode_started_is_never_decoded(model, tmp_path, decode_log, monkeypatch):
    worker = _worker(model, tmp_path, 1, start=False)  # no lanes: frames stay queued
    release = threading.Event()
    recording = decode_ahead.decode_image  # the decode_log fixture's

    def blocking(data: bytes, max_pixels: int):
        if data == blocker:
            assert release.wait(10)
        return recording(data, max_pixels)

    monkeypatch.setattr(decode_ahead, "decode_image", blocking)
    try:
        busy = StreamSession("ws", "semantic", "online", "default", "block", 4, lambda obj: None)
        live = StreamSession("ws", "semantic", "online", "default", "latest", 1, lambda obj: None)
        worker.scheduler.add(busy)
        worker.scheduler.add(live)
        blocker, dropped, kept = png(1), png(2), png(3)
        assert worker.offer(busy, FrameItem(frame_id="x", data=blocker))  # occupies the one decode thread
        b = FrameItem(frame_id="b", data=dropped)
        c = FrameItem(frame_id="c", data=kept)
        assert worker.offer(live, b) and worker.offer(live, c)  # c replaces b in the size-1 queue
        assert live.dropped == 1 and b.decoding.cancelled()
        release.set()
        c.decoding.result(10)
        assert [d for d, _ in decode_log] == [blocker, kept]
    finally:
        release.set()
        worker.stop()


def test_a_bad_image_fails_its_own_frame_only(model, tmp_path, decode_log):
    worker = _worker(model, tmp_path, 1)
    try:
        out: queue.Queue = queue.Queue()
        s = StreamSession("ws", "semantic", "online", "default", "block", 4, out.put)
        worker.open_session(s).result(5)
        assert worker.put(s, FrameItem(frame_id=0, data=b"\xff\xd8 not a jpeg"))
        assert worker.put(s, FrameItem(frame_id=1, data=png(7)))
        first, second = out.get(timeout=10), out.get(timeout=10)
        assert isinstance(first, FrameError) and first.code == "bad_image" and "cannot decode" in first.message
        assert isinstance(second, FrameResult) and second.frame_id == 1
    finally:
        worker.stop()
