"""DecodeAhead on its own: what `start` decodes and when again, where `result` gets its image from, and what
`shutdown` does to decodes under way and queued. Decodes are held on Events; no sleeps, no speed assertions."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future

import numpy as np
import pytest

from server.worker import decode_ahead as decode_ahead_module
from server.worker.decode_ahead import DecodeAhead
from server.worker.stream_session import FrameItem
from tests.server.svc_helpers import png, rgb_frame

WAIT_S = 10


class Decodes:
    """Stands in for `decode_image`: records the calling thread, optionally held until `gate` is set."""

    def __init__(self, held: bool = False) -> None:
        self.threads: list[str] = []
        self.entered, self.gate = threading.Event(), threading.Event()
        if not held:
            self.gate.set()

    def __call__(self, data: bytes, max_pixels: int) -> np.ndarray:
        self.threads.append(threading.current_thread().name)
        self.entered.set()
        assert self.gate.wait(WAIT_S)
        return rgb_frame()


@pytest.fixture
def decodes(monkeypatch) -> Decodes:
    d = Decodes()
    monkeypatch.setattr(decode_ahead_module, "decode_image", d)
    return d


@pytest.fixture
def held(monkeypatch) -> Decodes:
    d = Decodes(held=True)
    monkeypatch.setattr(decode_ahead_module, "decode_image", d)
    return d


def image(frame_id: int = 0) -> FrameItem:
    return FrameItem(frame_id=frame_id, data=png(rgb_frame()))


def test_an_array_frame_needs_no_decode_and_reports_none(decodes) -> None:
    dec = DecodeAhead(1, max_pixels=10_000)
    array = rgb_frame()
    item = FrameItem(frame_id=0, data=array)
    dec.start(item)
    assert item.decoding is None
    rgb, seconds = dec.result(item)
    assert rgb is array and seconds == 0.0
    assert decodes.threads == []
    dec.shutdown()


def test_a_started_decode_runs_once_on_the_pool_and_its_result_is_handed_over(decodes) -> None:
    dec = DecodeAhead(1, max_pixels=10_000)
    item = image()
    before = time.perf_counter()
    dec.start(item)
    first = item.decoding
    dec.start(item)  # already under way: not started twice
    assert item.decoding is first
    rgb, seconds = dec.result(item)
    wall = time.perf_counter() - before
    assert rgb.shape == (48, 64, 3)
    assert decodes.threads == ["frame-decode_0"]  # the pool's thread, not the caller
    assert 0.0 <= seconds <= wall  # a sane duration, not a clock reading
    dec.shutdown()


def test_a_cancelled_decode_is_started_again_or_done_by_the_caller(decodes) -> None:
    dec = DecodeAhead(1, max_pixels=10_000)
    offered_again = image(0)
    offered_again.decoding = Future()
    offered_again.decoding.cancel()  # as a refusal leaves it
    dec.start(offered_again)
    assert not offered_again.decoding.cancelled()
    assert offered_again.decoding.result(WAIT_S)[0].shape == (48, 64, 3)
    assert decodes.threads == ["frame-decode_0"]
    lazy = image(1)
    lazy.decoding = Future()
    lazy.decoding.cancel()
    rgb, _ = dec.result(lazy)  # a frame whose decode was cancelled is decoded by whoever needs it
    assert rgb.shape == (48, 64, 3)
    assert decodes.threads == ["frame-decode_0", threading.current_thread().name]
    dec.shutdown()


def test_without_threads_nothing_starts_and_the_caller_decodes(decodes) -> None:
    dec = DecodeAhead(0, max_pixels=10_000)
    item = image()
    dec.start(item)
    assert item.decoding is None
    rgb, seconds = dec.result(item)
    assert rgb.shape == (48, 64, 3) and seconds >= 0.0
    assert decodes.threads == [threading.current_thread().name]
    dec.shutdown()  # nothing to shut down


def test_shutdown_cancels_queued_decodes_without_waiting_for_the_one_under_way(held) -> None:
    dec = DecodeAhead(1, max_pixels=10_000)
    busy, queued = image(0), image(1)
    dec.start(busy)
    assert held.entered.wait(WAIT_S)
    dec.start(queued)
    try:
        dec.shutdown()
        assert busy.decoding.running()  # shutdown returned while the decode under way still runs
        assert queued.decoding.cancelled()
    finally:
        held.gate.set()
    assert busy.decoding.result(WAIT_S)[0].shape == (48, 64, 3)
