"""Tests of server.sources.rtsp.RtspSource against a real RTSP camera.

The camera is GStreamer's RTSP server (tests/e2e/rtsp_camera.py, run with
/usr/bin/python3) serving a live 10 fps H.264 test pattern on 127.0.0.1.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:  # plain `pytest` does not put the repo root on sys.path
    sys.path.insert(0, str(_ROOT))

from server.sources import RtspSource, SourceState, check_url_allowed, redact_url  # noqa: E402
from tests.e2e import conftest_rtsp  # noqa: E402
from tests.e2e.conftest_rtsp import RtspCamera, free_port  # noqa: E402

rtsp_camera = conftest_rtsp.rtsp_camera  # the fixture (that module is not a conftest.py)
LOCAL = ["127.0.0.1"]  # the test cameras are on loopback, which the host policy refuses unless listed


class Collector:
    """Thread-safe sink recording every delivered frame and state change."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.frames: list[tuple[tuple[int, ...], np.dtype, float, int, float]] = []
        self.last: np.ndarray | None = None
        self.states: list[SourceState] = []

    def on_frame(self, frame: np.ndarray, pts: float, index: int) -> None:
        with self.lock:
            self.frames.append((frame.shape, frame.dtype, pts, index, time.monotonic()))
            self.last = frame

    def on_state(self, state: SourceState) -> None:
        with self.lock:
            self.states.append(state)

    def count(self) -> int:
        with self.lock:
            return len(self.frames)

    def shapes_since(self, start: int) -> list[tuple[int, ...]]:
        with self.lock:
            return [f[0] for f in self.frames[start:]]


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``predicate`` until true; fail the test after ``timeout`` s. Returns the time taken."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - start


def make_source(url: str, sink: Collector, **kwargs: object) -> RtspSource:
    params: dict[str, object] = dict(open_timeout_s=3.0, stall_timeout_s=3.0, backoff_initial_s=0.2, backoff_max_s=1.0,
                                     allowed_hosts=LOCAL)
    params.update(kwargs)
    return RtspSource(url, sink.on_frame, on_state=sink.on_state, **params)  # type: ignore[arg-type]


@pytest.fixture
def sources() -> list[RtspSource]:
    """Collects sources so that every test stops its sources even when it fails."""
    made: list[RtspSource] = []
    yield made
    for source in made:
        source.stop(timeout=5.0)


# --------------------------------------------------------------------------- (a) decoding


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_decodes_real_stream(rtsp_camera: RtspCamera, sources: list[RtspSource]) -> None:
    sink = Collector()
    source = make_source(rtsp_camera.url, sink)
    sources.append(source)
    assert source.state == SourceState.STOPPED
    source.start()
    assert source.state in (SourceState.CONNECTING, SourceState.RUNNING)

    wait_until(lambda: sink.count() >= 10, 15, "10 frames")
    assert source.state == SourceState.RUNNING
    with sink.lock:
        frames = list(sink.frames)
        last = sink.last
    for shape, dtype, _pts, _index, _t in frames:
        assert shape == (240, 320, 3)
        assert dtype == np.uint8
    assert [f[3] for f in frames] == list(range(len(frames)))  # frame_index counts deliveries
    pts = [f[2] for f in frames]
    assert all(b > a for a, b in zip(pts, pts[1:], strict=False)), pts
    assert last is not None and last.flags.c_contiguous and last.std() > 5  # a real picture, not blank

    stats = source.stats
    assert stats.codec == "h264"
    assert (stats.width, stats.height) == (320, 240)
    assert stats.fps == pytest.approx(10.0)
    assert stats.reconnects == 0 and stats.last_error is None
    assert stats.frames >= 10 and stats.frames_dropped == 0
    assert sink.states[:2] == [SourceState.CONNECTING, SourceState.RUNNING]

    t0 = time.monotonic()
    assert source.stop(timeout=2.0)
    assert time.monotonic() - t0 < 2.0
    assert source.state == SourceState.STOPPED
    n = sink.count()
    time.sleep(0.5)
    assert sink.count() == n  # nothing delivered after stop()


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_max_fps_throttles_and_sink_errors_are_contained(rtsp_camera: RtspCamera, sources: list[RtspSource]) -> None:
    sink = Collector()
    calls = {"n": 0}

    def flaky_sink(frame: np.ndarray, pts: float, index: int) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("sink bug")
        sink.on_frame(frame, pts, index)

    source = RtspSource(rtsp_camera.url, flaky_sink, max_fps=4.0, open_timeout_s=3.0, allowed_hosts=LOCAL)
    sources.append(source)
    source.start()
    wait_until(lambda: sink.count() >= 9, 15, "9 throttled frames")
    source.stop()
    stats = source.stats
    with sink.lock:
        pts = [f[2] for f in sink.frames]
    gaps = np.diff(pts)
    assert gaps.min() >= 0.25 - 0.06, gaps  # never faster than max_fps (10 fps stream -> 0.2/0.3 s steps)
    rate = (len(pts) - 1) / (pts[-1] - pts[0])
    assert 3.0 <= rate <= 4.6, rate
    assert stats.frames_dropped > 0
    assert stats.frames_decoded == stats.frames + stats.frames_dropped
    assert stats.sink_errors == 1 and stats.frames == calls["n"]


# --------------------------------------------------------------------------- (b) reconnect


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_reconnects_after_camera_dies_and_comes_back_at_new_resolution(
    rtsp_camera: RtspCamera, sources: list[RtspSource]
) -> None:
    sink = Collector()
    source = make_source(rtsp_camera.url, sink)
    sources.append(source)
    source.start()
    wait_until(lambda: sink.count() >= 5, 15, "first frames")

    rtsp_camera.kill()  # like a camera losing power
    took = wait_until(lambda: source.state == SourceState.RECONNECTING, 10, "state reconnecting")
    print(f"loss detected in {took:.2f} s")
    time.sleep(1.5)  # a few refused attempts while the camera is down
    assert source.state == SourceState.RECONNECTING
    assert source.stats.last_error
    before = sink.count()

    rtsp_camera.start(rtsp_camera.port, 640, 480)
    took = wait_until(lambda: (480, 640, 3) in sink.shapes_since(before), 20, "frames at the new size")
    print(f"frames resumed {took:.2f} s after the camera restarted")
    assert source.state == SourceState.RUNNING
    assert all(shape == (480, 640, 3) for shape in sink.shapes_since(before))
    stats = source.stats
    assert stats.reconnects >= 1
    assert (stats.width, stats.height) == (640, 480)
    assert stats.codec == "h264"
    assert stats.consecutive_failures == 0
    assert SourceState.RECONNECTING in sink.states
    assert sink.states[-1] == SourceState.RUNNING
    with sink.lock:
        indexes = [f[3] for f in sink.frames]
    assert indexes == list(range(len(indexes)))  # frame_index keeps counting across reconnects


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_stall_watchdog_reconnects_a_frozen_camera(rtsp_camera: RtspCamera, sources: list[RtspSource]) -> None:
    sink = Collector()
    source = make_source(rtsp_camera.url, sink, stall_timeout_s=2.0, open_timeout_s=2.0)
    sources.append(source)
    source.start()
    wait_until(lambda: sink.count() >= 3, 15, "first frames")

    rtsp_camera.pause()  # TCP stays up, nothing arrives
    try:
        took = wait_until(lambda: source.state == SourceState.RECONNECTING, 8, "stall detection")
        print(f"stall detected in {took:.2f} s")
        assert "stall" in (source.stats.last_error or "")
    finally:
        rtsp_camera.resume()
    before = sink.count()
    wait_until(lambda: sink.count() >= before + 3, 25, "frames after resume")
    assert source.state == SourceState.RUNNING
    assert source.stats.reconnects >= 1


# --------------------------------------------------------------------------- (c) bad URLs


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_closed_port_fails_with_clear_error() -> None:
    port = free_port()  # nothing listens there
    sink = Collector()
    source = make_source(f"rtsp://127.0.0.1:{port}/cam", sink, max_failures=3)
    start = time.monotonic()
    source.start()
    assert source.wait_for_state(SourceState.FAILED, timeout=10)
    took = time.monotonic() - start
    print(f"failed after {took:.2f} s")
    stats = source.stats
    error = stats.last_error or ""
    assert "connection refused" in error and f"127.0.0.1:{port}" in error, error
    assert "3 consecutive" in error
    assert stats.connect_failures == 3 and stats.reconnects == 2 and stats.frames == 0
    assert sink.states == [SourceState.CONNECTING, SourceState.RECONNECTING, SourceState.FAILED]
    assert source.stop(timeout=2.0)
    assert source.state == SourceState.FAILED  # stop() keeps the verdict


@pytest.mark.e2e
@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("path", "expected"),
    [("missing", "404"), ("audio", "no video track")],
    ids=["404-not-found", "not-a-video"],
)
def test_bad_path_fails_with_clear_error(
    rtsp_camera: RtspCamera, sources: list[RtspSource], path: str, expected: str
) -> None:
    url = rtsp_camera.url_for(path)
    sink = Collector()
    source = make_source(url, sink, max_failures=2)
    sources.append(source)
    source.start()
    assert source.wait_for_state(SourceState.FAILED, timeout=15), source.stats
    error = source.stats.last_error or ""
    assert expected in error and url in error, error
    assert sink.count() == 0


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_silent_server_times_out_with_clear_error(sources: list[RtspSource]) -> None:
    with socket.socket() as listener:  # accepts TCP (kernel backlog) but never speaks RTSP
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        sink = Collector()
        source = make_source(f"rtsp://127.0.0.1:{port}/cam", sink, open_timeout_s=1.5, max_failures=1)
        sources.append(source)
        start = time.monotonic()
        source.start()
        assert source.wait_for_state(SourceState.FAILED, timeout=10)
        assert time.monotonic() - start < 5
        error = source.stats.last_error or ""
        assert "timed out" in error and f"127.0.0.1:{port}" in error, error


# --------------------------------------------------------------------------- (d) stop()


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_stop_from_reconnecting_is_prompt(rtsp_camera: RtspCamera, sources: list[RtspSource]) -> None:
    sink = Collector()
    source = make_source(rtsp_camera.url, sink, backoff_initial_s=5.0, backoff_max_s=10.0)
    sources.append(source)
    source.start()
    wait_until(lambda: sink.count() >= 2, 15, "first frames")
    rtsp_camera.kill()
    wait_until(lambda: source.state == SourceState.RECONNECTING, 10, "state reconnecting")
    time.sleep(0.3)

    start = time.monotonic()
    assert source.stop(timeout=2.0)
    took = time.monotonic() - start
    print(f"stop() from reconnecting took {took:.3f} s")
    assert took < 2.0
    assert source.state == SourceState.STOPPED
    assert not source.worker_alive
    assert sink.states[-1] == SourceState.STOPPED


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_stop_while_blocked_in_open_is_prompt(sources: list[RtspSource]) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        sink = Collector()
        source = make_source(f"rtsp://127.0.0.1:{port}/cam", sink, open_timeout_s=4.0)
        sources.append(source)
        source.start()
        time.sleep(0.5)  # now inside av.open, waiting for an RTSP answer
        assert source.state == SourceState.CONNECTING

        start = time.monotonic()
        source.stop(timeout=1.0)
        assert time.monotonic() - start < 2.0
        assert source.state == SourceState.STOPPED
        # The worker leaves the blocking call within the open timeout and does not retry.
        wait_until(lambda: not source.worker_alive, 6, "worker exit")
        assert source.state == SourceState.STOPPED
        assert source.stats.reconnects == 0


def test_stop_before_start_and_double_start() -> None:
    source = RtspSource("rtsp://127.0.0.1:9/cam", lambda *a: None, allowed_hosts=LOCAL)
    assert source.stop() is True
    assert source.state == SourceState.STOPPED
    source2 = RtspSource("rtsp://127.0.0.1:9/cam", lambda *a: None, max_failures=1, allowed_hosts=LOCAL)
    source2.start()
    with pytest.raises(RuntimeError):
        source2.start()
    source2.stop()


# --------------------------------------------------------------------------- (e) allowlist


def test_allowlist_rejects_non_rtsp_schemes() -> None:
    with pytest.raises(ValueError, match=r"scheme 'http' is not allowed.*allowed schemes: rtsp, rtsps"):
        check_url_allowed("http://127.0.0.1:8554/cam")
    for url in ("file:///etc/passwd", "rtmp://cam/live", "cam.local/stream", ""):
        with pytest.raises(ValueError):
            check_url_allowed(url)
    with pytest.raises(ValueError, match="scheme 'http'"):
        RtspSource("http://127.0.0.1/cam", lambda *a: None)


def test_allowlist_hosts() -> None:
    allowed = ["127.0.0.1", "cam1.example.com", "*.cams.example.org", "10.20.0.0/16"]
    assert check_url_allowed("rtsp://127.0.0.1:8554/cam", allowed_hosts=allowed).port == 8554
    assert check_url_allowed("rtsps://CAM1.example.com/s", allowed_hosts=allowed).hostname == "cam1.example.com"
    check_url_allowed("rtsp://lobby.cams.example.org/s", allowed_hosts=allowed)
    check_url_allowed("rtsp://10.20.3.4/s", allowed_hosts=allowed)
    for url in (
        "rtsp://evil.example.com/cam",
        "rtsp://cams.example.org/s",  # the wildcard needs a sub-domain
        "rtsp://10.21.0.1/s",
        "rtsp://127.0.0.2/cam",
        "rtsp://cam1.example.com.evil.net/s",
    ):
        with pytest.raises(ValueError, match="not in the allowed hosts list"):
            check_url_allowed(url, allowed_hosts=allowed)
    with pytest.raises(ValueError, match="not in the allowed hosts list"):
        check_url_allowed("rtsp://127.0.0.1/cam", allowed_hosts=[])
    with pytest.raises(ValueError, match="no host"):
        check_url_allowed("rtsp:///cam")


def test_errors_and_logs_redact_passwords() -> None:
    url = "rtsp://admin:s3cret@evil.example.com:554/cam"
    assert redact_url(url) == "rtsp://admin:***@evil.example.com:554/cam"
    with pytest.raises(ValueError) as info:
        check_url_allowed(url.replace("rtsp:", "http:"))
    assert "s3cret" not in str(info.value)
    source = RtspSource(url, lambda *a: None)
    assert "s3cret" not in source.name and "s3cret" not in repr(source)
