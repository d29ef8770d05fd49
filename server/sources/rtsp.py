"""RTSP camera source: the shared live reader in a daemon thread, behind the server's ``FrameSource`` protocol.

:class:`RtspSource` checks the URL (:func:`~server.sources.url_policy.check_url_allowed`: rtsp/rtsps with a
host allowed by ``allowed_hosts``), then runs one :class:`~mask2former_ttt.live.reader.LiveReader` per camera in a
daemon thread and calls the sink with every frame.  Every connection attempt goes through a relay
(:mod:`server.sources.rtsp_relay`): the host is resolved and every address checked
(:class:`~server.sources.url_policy.HostPolicy`), the relay connects to a checked address, FFmpeg talks to the
relay, and a camera's RTSP redirect is refused instead of followed.  The reader does the rest (see its module):

* opens the URL with FFmpeg's RTSP demuxer over TCP, tuned for low latency;
* decodes the first video stream only into ``(H, W, 3)`` ``uint8`` RGB arrays, optionally throttled to
  ``max_fps``;
* reconnects on its own when the stream ends, errors out or stalls, with exponential backoff and full
  jitter; codec or resolution changes across reconnects are picked up (``stats`` follows the latest frame);
* gives up (state ``FAILED``) after ``max_failures`` consecutive failed connection attempts or
  ``max_outage_s`` seconds without a frame, with a
  ``last_error`` that says what is wrong with the URL (connection refused, host unreachable / not
  resolvable, address refused by the policy, redirect refused, 404 stream not found, no video track,
  timeout, ...).  That diagnosis is for the server log: :func:`client_error` is what clients may see.

``stop()`` returns promptly from any state: backoff waits are interruptible, and blocking FFmpeg calls
are bounded by the open/read timeouts (PyAV's interrupt callback); a worker still blocked in such a call
when ``stop()`` returns exits on its own within that bound and never calls the sink again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Generator, Mapping, Sequence

import numpy as np

from mask2former_ttt.live.diagnosis import LiveConnectError
from mask2former_ttt.live.reader import LiveReader
from mask2former_ttt.video_io import VideoFrame, redact_url

from .base import FrameSink, SourceState, SourceStats, StateCallback
from .rtsp_relay import Relay, open_relay
from .url_policy import HostPolicy, Resolver, check_url_allowed

__all__ = ["RtspSource", "RtspConnectError", "check_url_allowed", "client_error", "redact_url"]

logger = logging.getLogger(__name__)

#: A connection attempt failed; the message is meant for humans (and ``last_error``).
RtspConnectError = LiveConnectError


def client_error(stats: SourceStats | object | None) -> str | None:
    """What a client may learn about a camera's trouble: no diagnosis, only that it is unavailable.

    Telling "connection refused" from "host reachable, but not RTSP" from "no answer" would turn the service into
    a port scanner of the networks it can reach; the detailed ``last_error`` goes to the server log only.
    """
    if not getattr(stats, "last_error", None):
        return None
    failures = int(getattr(stats, "connect_failures", 0) or 0)
    return f"camera unavailable ({failures} failed connection attempt{'s' if failures != 1 else ''})"


class RtspSource:
    """Pulls an RTSP stream in a daemon thread and delivers RGB frames to ``on_frame``.

    Args:
        url: ``rtsp://`` or ``rtsps://`` URL (credentials allowed; they are redacted in logs).
        on_frame: sink called as ``on_frame(frame, pts_seconds, frame_index)`` from the worker thread.
        max_fps: deliver at most this many frames per second (by stream time);
            frames in between are decoded and dropped (``stats.frames_dropped``).
            ``None`` delivers every frame.
        open_timeout_s: bound on one connection attempt (``av.open`` + stream probing).
        stall_timeout_s: if no frame is decoded for this long the connection is
            closed and re-opened (also the bound on each blocking read).
        backoff_initial_s: upper bound of the first retry delay.
        backoff_max_s: cap of the retry delay; delays are ``uniform(0, min(max, initial * 2**n))``
            for the ``n``-th consecutive failure ("full jitter").
        max_failures: give up (state ``FAILED``) after this many consecutive
            failed connection attempts (an attempt that connects but yields no
            frame counts as failed); ``None``: no limit.
        max_outage_s: give up once this many seconds passed without a frame while reconnecting; ``None``: no
            limit.
        on_state: optional callback called with each new :class:`SourceState`.
        ffmpeg_options: extra/override options for ``av.open`` (strings).
        name: label for logs and the thread name (defaults to the redacted URL).
        allowed_hosts: the service's host allowlist (names, ``*.suffix``, IPs, CIDR networks); None = any
            host name.  Either way an address that is not public (loopback, private, link-local, ...) is
            refused unless an IP / CIDR entry lists it (:class:`~server.sources.url_policy.HostPolicy`).
        resolver: ``resolver(host, port) -> [ip, ...]`` (default: the system resolver); for tests.

    Raises:
        ValueError: if the URL is not an allowed rtsp/rtsps URL or an argument is out of range.
    """

    def __init__(
        self,
        url: str,
        on_frame: FrameSink | Callable[[np.ndarray, float, int], None],
        max_fps: float | None = None,
        open_timeout_s: float = 5.0,
        stall_timeout_s: float = 5.0,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 10.0,
        max_failures: int | None = None,
        max_outage_s: float | None = None,
        on_state: StateCallback | Callable[[SourceState], None] | None = None,
        *,
        ffmpeg_options: Mapping[str, str] | None = None,
        name: str | None = None,
        allowed_hosts: Sequence[str] | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        check_url_allowed(url, allowed_hosts=allowed_hosts)
        self.policy = HostPolicy.of(allowed_hosts, resolver)
        self._reader = LiveReader(
            url,
            max_fps=max_fps,
            open_timeout_s=open_timeout_s,
            stall_timeout_s=stall_timeout_s,
            backoff_initial_s=backoff_initial_s,
            backoff_max_s=backoff_max_s,
            max_failures=max_failures,
            max_outage_s=max_outage_s,
            on_state=on_state,
            ffmpeg_options=ffmpeg_options,
            name=name or redact_url(url),
            dialer=self._dial,
        )
        self.url = url
        self.name = self._reader.name
        self._on_frame = on_frame
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._started = False

    # ------------------------------------------------------------------ public API

    @property
    def state(self) -> SourceState:
        """Current :class:`SourceState`."""
        return self._reader.state

    @property
    def stats(self) -> SourceStats:
        """A consistent snapshot (copy) of the counters."""
        return self._reader.stats

    @property
    def ffmpeg_options(self) -> dict[str, str]:
        """Options passed to ``av.open`` (FFmpeg AVOptions, all strings)."""
        return self._reader.ffmpeg_options

    @property
    def max_fps(self) -> float | None:
        return self._reader.max_fps

    def start(self) -> None:
        """Start the worker thread (returns immediately). A source can be started once."""
        with self._lock:
            if self._started:
                raise RuntimeError(f"RtspSource {self.name} was already started")
            self._started = True
        frames = self._reader.frames()  # state -> CONNECTING (outside our lock: it calls on_state)
        thread = threading.Thread(target=self._run, args=(frames,), name=f"rtsp-source[{self.name}]", daemon=True)
        with self._lock:
            self._thread = thread
        logger.info("rtsp source %s: starting", self.name)
        thread.start()

    def stop(self, timeout: float = 2.0) -> bool:
        """Stop pulling; safe from any state and any thread (from a callback it does not wait).

        The state becomes ``STOPPED`` at once (a ``FAILED`` source stays ``FAILED``)
        and the sink is not called after this returns.  Waits up to ``timeout``
        seconds for the worker thread to exit.

        Returns:
            True if the worker thread has exited (or never ran), False if it is
            still finishing a blocking FFmpeg call (it exits on its own within
            the open/read timeout).
        """
        self._reader.stop()
        with self._lock:
            thread = self._thread
        if thread is None or thread is threading.current_thread():
            return thread is None
        thread.join(timeout)
        alive = thread.is_alive()
        if alive:
            logger.warning(
                "rtsp source %s: worker still in a blocking FFmpeg call after %.1f s; it will exit on its own",
                self.name,
                timeout,
            )
        return not alive

    @property
    def worker_alive(self) -> bool:
        """True while the worker thread runs (it can outlive ``stop()`` by up to one FFmpeg timeout)."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def wait_for_state(self, *states: SourceState, timeout: float) -> bool:
        """Poll until the state is one of ``states``; True if reached within ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            if self.state in states:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    def __enter__(self) -> RtspSource:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"RtspSource({self.name!r}, state={self.state.value})"

    # ------------------------------------------------------------------ internals

    def _dial(self, url: str, open_timeout_s: float) -> Relay:
        """Each connection attempt: check where the URL leads now and relay FFmpeg there."""
        return open_relay(url, self.policy, open_timeout_s)

    def _run(self, frames: Generator[VideoFrame, None, None]) -> None:
        try:
            for frame in frames:
                if self._reader.stopping:
                    break
                try:
                    self._on_frame(frame.rgb, frame.pts_s, frame.index)
                except Exception:
                    self._reader.record_sink_error()
                    logger.exception("rtsp source %s: on_frame sink raised (frame %d)", self.name, frame.index)
        except Exception:  # the reader contains its own errors; this is a last resort
            logger.exception("rtsp source %s: reader crashed", self.name)
        finally:
            frames.close()
            logger.info("rtsp source %s: worker exiting (state %s)", self.name, self.state.value)
