"""End to end: the live reader of `m2f-ttt segment` reconnects after the camera drops, and gives up clearly.

`segment_video` opens live inputs with `mask2former_ttt.live.sources.open_source` (the same reader as the
service's RTSP cameras). Here that reader is driven against a real RTSP camera (GStreamer's RTSP server on
loopback, tests/e2e/rtsp_camera.py): the camera is killed while frames flow and restarted at another size;
frames must come from before and after, with at least one reconnect. A camera that stays down ends the
iteration with `VideoError("unavailable", ...)` naming what happened.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest

import mask2former_ttt.segment as segment
from mask2former_ttt.live import SourceState
from mask2former_ttt.live import sources as live_sources
from mask2former_ttt.video_io import VideoError
from tests.e2e.conftest_rtsp import RtspCamera, rtsp_camera  # noqa: F401  (fixture)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

FAST = dict(open_timeout_s=3.0, stall_timeout_s=3.0, backoff_initial_s=0.1, backoff_max_s=0.5)


@dataclass
class Got:
    index: int
    shape: tuple[int, ...]
    native: tuple[int | None, int | None]  # the camera's frame size when this frame was read
    reconnects: int


class Consumer:
    """Iterates `frames` in a thread (as segment's loop does), recording frames, states and the final error."""

    def __init__(self, frames: live_sources.LiveFrames) -> None:
        self.frames = frames
        self.cond = threading.Condition()
        self.got: list[Got] = []
        self.states: list[SourceState] = []
        self.error: BaseException | None = None
        self.done = False
        self.enough = threading.Event()
        self.thread = threading.Thread(target=self._run, name="segment-live-consumer", daemon=True)

    def on_state(self, state: SourceState) -> None:
        with self.cond:
            self.states.append(state)
            self.cond.notify_all()

    def _run(self) -> None:
        try:
            for frame in self.frames:
                stats = self.frames.stats
                with self.cond:
                    self.got.append(Got(frame.index, frame.rgb.shape, (stats.width, stats.height), stats.reconnects))
                    self.cond.notify_all()
                if self.enough.is_set():
                    break
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
            self.error = exc
        finally:
            self.frames.close()
            with self.cond:
                self.done = True
                self.cond.notify_all()

    def wait(self, predicate, timeout: float, what: str) -> None:
        with self.cond:
            ok = self.cond.wait_for(lambda: predicate() or self.done, timeout)
            if not (ok and predicate()):
                pytest.fail(f"{what}: not reached within {timeout:g} s (consumer done={self.done}, "
                            f"error={self.error!r}, frames={len(self.got)}, states={self.states}, "
                            f"stats={self.frames.stats})")

    def finish(self) -> None:
        self.enough.set()
        self.frames.stop()  # the consumer thread closes the iterator itself
        self.thread.join(10)
        assert not self.thread.is_alive(), "the reader did not stop"


def test_segment_uses_the_shared_live_reader() -> None:
    assert segment.open_source is live_sources.open_source
    assert segment.source_kind("rtsp://127.0.0.1:8554/cam") == "stream"


def test_segment_live_reader_reconnects_after_camera_drop(rtsp_camera: RtspCamera) -> None:  # noqa: F811
    consumer_box: list[Consumer] = []
    info, frames = live_sources.open_source(
        rtsp_camera.url, max_width=160, max_failures=50, max_outage_s=40.0,
        on_state=lambda s: consumer_box[0].on_state(s) if consumer_box else None, **FAST,
    )
    assert isinstance(frames, live_sources.LiveFrames)
    assert (info.kind, info.codec, info.width, info.height) == ("stream", "h264", 320, 240)
    consumer = Consumer(frames)
    consumer_box.append(consumer)
    consumer.thread.start()
    try:
        consumer.wait(lambda: len(consumer.got) >= 3, 15, "first frames")

        rtsp_camera.kill()  # like a camera losing power
        consumer.wait(lambda: SourceState.RECONNECTING in consumer.states, 15, "the loss noticed")
        with consumer.cond:
            before = len(consumer.got)

        rtsp_camera.start(rtsp_camera.port, 640, 480)  # back, at another resolution
        consumer.wait(lambda: any(g.native == (640, 480) for g in consumer.got[before:]), 30,
                      "frames from the restarted camera")
    finally:
        consumer.finish()

    assert consumer.error is None, consumer.error
    got = consumer.got
    assert any(g.native == (320, 240) for g in got[:before]), "no frame from before the drop"
    after = [g for g in got[before:] if g.native == (640, 480)]
    assert after and all(g.reconnects >= 1 for g in after)
    assert frames.stats.reconnects >= 1
    assert [g.index for g in got] == list(range(len(got)))  # one numbering across the reconnect
    assert all(g.shape == (120, 160, 3) for g in got)  # one output size for segment's writer


def test_segment_live_reader_gives_up_with_a_clear_error(rtsp_camera: RtspCamera) -> None:  # noqa: F811
    info, frames = live_sources.open_source(rtsp_camera.url, max_failures=2, **FAST)
    consumer = Consumer(frames)
    consumer.thread.start()
    try:
        consumer.wait(lambda: len(consumer.got) >= 2, 15, "first frames")
        rtsp_camera.kill()  # and it stays down
        consumer.wait(lambda: consumer.done, 20, "the reader giving up")
    finally:
        consumer.finish()
    error = consumer.error
    assert isinstance(error, VideoError) and error.kind == "unavailable", repr(error)
    message = str(error)
    assert "gave up after 2 consecutive failed connection attempts" in message, message
    assert "connection refused" in message and rtsp_camera.url in message, message
    assert frames.state == SourceState.FAILED
