"""The one live-video reader: open with FFmpeg, decode, reconnect with backoff, say what went wrong.

:class:`LiveReader` is used by the service's RTSP cameras (``server.sources.rtsp.RtspSource`` runs it in
a thread and pushes its frames to a sink) and by ``m2f-ttt segment`` on live inputs
(:mod:`mask2former_ttt.live.sources` iterates it).  It

* opens the URL with PyAV; RTSP over TCP, tuned for low latency (:func:`input_options`);
* decodes the first video stream only and yields :class:`~mask2former_ttt.video_io.VideoFrame` s
  (``(H, W, 3)`` ``uint8`` RGB, pts in seconds, an index that keeps counting across reconnects),
  optionally scaled to ``max_width`` and throttled to ``max_fps``;
* reconnects on its own when the stream ends, errors out or stalls, with exponential backoff and full
  jitter; codec or resolution changes across reconnects are picked up (``stats`` follows the latest frame);
* gives up (state ``FAILED``) after ``max_failures`` consecutive failed connection attempts or
  ``max_outage_s`` seconds without a frame, with a ``last_error`` that says what is wrong with the URL
  (connection refused, host unreachable / not resolvable, 404 stream not found, no video track,
  timeout, ...; see :mod:`mask2former_ttt.live.diagnosis`).

The reader is pulled: time the consumer spends between two frames does not count as a stall.

FFmpeg options (checked against the FFmpeg bundled with PyAV 18, libavformat 62):
the RTSP demuxer's socket I/O timeout is ``timeout`` in microseconds;
the old ``stimeout`` name no longer exists (removed in FFmpeg 5).

``stop()`` may be called from any thread: backoff waits are interruptible, and blocking FFmpeg calls
are bounded by the open/read timeouts (PyAV's interrupt callback), after which the iterator ends.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Generator, Mapping
from typing import Protocol

import av
import av.error
import numpy as np

from mask2former_ttt.video_io import VideoFrame, redact_url, scaled_size

from .backoff import Backoff
from .diagnosis import LiveConnectError, describe_open_error, endpoint
from .state import SourceState, SourceStats

__all__ = ["Dial", "Dialer", "LiveReader", "input_options"]

logger = logging.getLogger(__name__)

try:  # PyAV >= 12 exposes the codec flag enum here.
    from av.codec.context import Flags as _CodecFlags

    _LOW_DELAY_FLAG: object | None = _CodecFlags.low_delay
except (ImportError, AttributeError):  # pragma: no cover - older/newer PyAV
    _LOW_DELAY_FLAG = None


def is_rtsp(url: str) -> bool:
    return url.lower().startswith(("rtsp://", "rtsps://"))


def input_options(url: str, open_timeout_s: float, stall_timeout_s: float) -> dict[str, str]:
    """FFmpeg AVOptions (all strings) for opening ``url``: low-latency RTSP over TCP; nothing for other inputs."""
    if not is_rtsp(url):
        return {}
    return {
        "rtsp_transport": "tcp",
        # RTSP demuxer socket I/O timeout, microseconds ("stimeout" before FFmpeg 5).
        "timeout": str(int(max(open_timeout_s, stall_timeout_s) * 1_000_000)),
        "fflags": "nobuffer",
        "flags": "low_delay",
        # Keep stream probing short: the SDP carries the codec parameters.
        "analyzeduration": "500000",
        "probesize": "500000",
        "max_delay": "500000",
    }


class Dial(Protocol):
    """One connection attempt prepared by a :data:`Dialer`: FFmpeg opens :attr:`url` instead of the input's URL."""

    url: str

    def failure(self) -> str | None:
        """Why the dialer cut the connection, if it did (this replaces FFmpeg's vaguer error)."""

    def close(self) -> None:
        """Release the attempt's resources (called when its connection ends)."""


#: ``dialer(url, open_timeout_s)`` -> a :class:`Dial`, before each connection attempt; raises
#: :class:`LiveConnectError` to fail the attempt (e.g. a service checking where a camera URL leads).
Dialer = Callable[[str, float], Dial]


class _SessionEnded(Exception):
    """Internal: the current connection is over (EOF, stall, demux error); args[0] says why."""

    def __init__(self, message: str, eof: bool = False) -> None:
        super().__init__(message)
        self.eof = eof  # the input ended normally (as opposed to a stall or a read error)


class _Session:
    def __init__(self, container: av.container.InputContainer, stream: av.VideoStream, dial: Dial | None) -> None:
        self.container, self.stream, self.dial = container, stream, dial
        self.got_frame = False

    def dial_failure(self) -> str | None:
        return self.dial.failure() if self.dial is not None else None

    def close(self, name: str) -> None:
        try:
            self.container.close()
        except Exception:  # pragma: no cover - best effort
            logger.debug("live reader %s: error closing container", name, exc_info=True)
        if self.dial is not None:
            self.dial.close()


class LiveReader:
    """Reads a live video input, reconnecting as needed; iterate :meth:`frames`.

    Args:
        url: an RTSP/HTTP/... URL (credentials allowed; they are redacted in logs), a camera device, or
            any FFmpeg input together with ``input_format``.
        input_format: FFmpeg input format (``v4l2``, ``lavfi``, ...); None lets FFmpeg guess.
        max_fps: deliver at most this many frames per second (by stream time); frames in between are
            decoded and dropped (``stats.frames_dropped``). ``None`` delivers every frame.
        max_width: scale frames down (never up) to this width, aspect kept, even sizes.
        keep_first_size: deliver every frame at the size of the first one, even if the input comes back
            at another resolution after a reconnect (for writers that need one size).
        open_timeout_s: bound on one connection attempt (``av.open`` + stream probing).
        stall_timeout_s: if no frame is decoded for this long the connection is
            closed and re-opened (also the bound on each blocking read).
        backoff_initial_s: upper bound of the first retry delay.
        backoff_max_s: cap of the retry delay; delays are ``uniform(0, min(max, initial * 2**n))``
            for the ``n``-th consecutive failure ("full jitter").
        max_failures: give up (state ``FAILED``) after this many consecutive failed connection
            attempts (an attempt that connects but yields no frame counts as failed); ``None``: no limit.
        max_outage_s: give up once this many seconds passed since the last frame (or since the first
            attempt) while reconnecting; ``None``: no limit.
        reconnect: False ends the iteration when the input ends (end of a finite input) and gives up at
            the first error; for inputs where "reconnect" means nothing (``lavfi``, ...).
        on_state: optional callback called with each new :class:`SourceState`.
        ffmpeg_options: extra/override options for ``av.open`` (strings).
        name: label for logs (defaults to the redacted URL).
        dialer: optional :data:`Dialer` run before each connection attempt (FFmpeg then opens the URL it
            returns, and errors are explained without probing the input's host again).
        clock: seconds of a monotonic clock (outage lengths); ``time.monotonic`` unless a test injects one.
        wait: ``wait(seconds) -> stopped`` between attempts; default: a wait that :meth:`stop` interrupts.

    Raises:
        ValueError: if an argument is out of range.
    """

    def __init__(
        self,
        url: str,
        *,
        input_format: str | None = None,
        max_fps: float | None = None,
        max_width: int | None = None,
        keep_first_size: bool = False,
        open_timeout_s: float = 5.0,
        stall_timeout_s: float = 5.0,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 10.0,
        max_failures: int | None = None,
        max_outage_s: float | None = None,
        reconnect: bool = True,
        on_state: Callable[[SourceState], None] | None = None,
        ffmpeg_options: Mapping[str, str] | None = None,
        name: str | None = None,
        dialer: Dialer | None = None,
        clock: Callable[[], float] = time.monotonic,
        wait: Callable[[float], bool] | None = None,
    ) -> None:
        if max_fps is not None and max_fps <= 0:
            raise ValueError(f"max_fps must be > 0 or None, got {max_fps}")
        if open_timeout_s <= 0 or stall_timeout_s <= 0:
            raise ValueError("open_timeout_s and stall_timeout_s must be > 0")
        if backoff_initial_s < 0 or backoff_max_s < backoff_initial_s:
            raise ValueError("need 0 <= backoff_initial_s <= backoff_max_s")
        if max_failures is not None and max_failures < 1:
            raise ValueError(f"max_failures must be >= 1 or None, got {max_failures}")
        if max_outage_s is not None and max_outage_s <= 0:
            raise ValueError(f"max_outage_s must be > 0 or None, got {max_outage_s}")
        self.url = url
        self.name = name or redact_url(url)
        self.input_format = input_format
        self.max_fps = max_fps
        self.max_width = max_width
        self.keep_first_size = keep_first_size
        self.open_timeout_s = float(open_timeout_s)
        self.stall_timeout_s = float(stall_timeout_s)
        self.backoff_initial_s = float(backoff_initial_s)
        self.backoff_max_s = float(backoff_max_s)
        self.max_failures = max_failures
        self.max_outage_s = max_outage_s
        self.reconnect = reconnect
        self._on_state = on_state
        self._extra_options = dict(ffmpeg_options or {})
        self._network = endpoint(url) is not None
        self._dialer = dialer
        self._clock = clock

        self._lock = threading.Lock()
        self._transition_lock = threading.RLock()
        self._stop_event = threading.Event()
        self._wait = wait or self._stop_event.wait
        self._state = SourceState.STOPPED
        self._stats = SourceStats()
        self._backoff = Backoff(self.backoff_initial_s, self.backoff_max_s)
        self._begun = False
        self._pending: _Session | None = None
        self._out_size: tuple[int, int] | None = None

    # ------------------------------------------------------------------ public API

    @property
    def state(self) -> SourceState:
        """Current :class:`SourceState`."""
        with self._lock:
            return self._state

    @property
    def stats(self) -> SourceStats:
        """A consistent snapshot (copy) of the counters."""
        with self._lock:
            return SourceStats(**self._stats.as_dict())  # type: ignore[arg-type]

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stop_event.is_set()

    @property
    def ffmpeg_options(self) -> dict[str, str]:
        """Options passed to ``av.open`` (FFmpeg AVOptions, all strings)."""
        options = input_options(self.url, self.open_timeout_s, self.stall_timeout_s)
        options.update(self._extra_options)
        return options

    def connect(self) -> SourceStats:
        """Make the first connection attempt now, so a wrong URL fails at once and the stream's facts are known.

        Returns the stats (codec, size, frame rate filled in); :meth:`frames` then starts on this connection.

        Raises:
            LiveConnectError: the input cannot be opened (the reader is then ``FAILED``).
        """
        self._begin()
        try:
            self._pending = self._open_session()
        except LiveConnectError as exc:
            with self._lock:
                self._stats.last_error = str(exc)
                self._stats.connect_failures += 1
                self._stats.consecutive_failures += 1
            self._set_state(SourceState.FAILED)
            raise
        return self.stats

    def frames(self) -> Generator[VideoFrame, None, None]:
        """The frames, across reconnects, until :meth:`stop` or giving up (then ``state`` is ``FAILED``).

        The state becomes ``CONNECTING`` at once (unless :meth:`connect` ran). Closing the iterator
        closes the current connection.
        """
        if not self._begun:
            self._begin()
        return self._frames()

    def stop(self) -> None:
        """Stop reading, from any thread: the state becomes ``STOPPED`` at once (``FAILED`` stays ``FAILED``).

        The iterator ends at its next check, at the latest when a blocking FFmpeg call returns
        (bounded by the open/read timeouts).
        """
        self._stop_event.set()
        with self._lock:
            already_final = self._state.is_terminal
        if not already_final:
            self._set_state(SourceState.STOPPED)

    def record_sink_error(self) -> None:
        """Count an exception raised by whoever consumes the frames (``stats.sink_errors``)."""
        with self._lock:
            self._stats.sink_errors += 1

    def __repr__(self) -> str:
        return f"LiveReader({self.name!r}, state={self.state.value})"

    # ------------------------------------------------------------------ internals

    def _begin(self) -> None:
        with self._lock:
            if self._begun:
                raise RuntimeError(f"live reader {self.name} was already started")
            self._begun = True
        self._set_state(SourceState.CONNECTING)

    def _set_state(self, state: SourceState) -> None:
        # _transition_lock makes "change + notify" atomic, so callbacks see the
        # transitions in the order they happened (stop() races the reader).
        with self._transition_lock:
            with self._lock:
                current = self._state
                if current == state or current == SourceState.FAILED:
                    return  # no repeats; FAILED is final
                if self._stop_event.is_set() and state != SourceState.STOPPED:
                    return  # once stopping, only STOPPED may be entered
                self._state = state
            logger.info("live reader %s: state -> %s", self.name, state.value)
            if self._on_state is not None:
                try:
                    self._on_state(state)
                except Exception:
                    logger.exception("live reader %s: on_state callback raised", self.name)

    def _record_error(self, message: str) -> None:
        with self._lock:
            self._stats.last_error = message

    def _give_up(self, message: str) -> None:
        self._record_error(message)
        logger.error("live reader %s: %s", self.name, message)
        self._set_state(SourceState.FAILED)

    def _frames(self) -> Generator[VideoFrame, None, None]:
        first_attempt = True
        outage_since = self._clock()
        try:
            while not self._stop_event.is_set():
                if not first_attempt:
                    self._set_state(SourceState.RECONNECTING)
                    with self._lock:
                        self._stats.reconnects += 1
                first_attempt = False

                session, self._pending = self._pending, None
                finished = False  # a finite input ended (reconnect=False): not an error
                try:
                    session = session or self._open_session()
                    yield from self._pump(session)
                except LiveConnectError as exc:
                    if self._stop_event.is_set():
                        break
                    self._record_error(str(exc))
                    logger.warning("live reader %s: connect failed: %s", self.name, exc)
                except _SessionEnded as exc:
                    if self._stop_event.is_set():
                        break
                    finished = exc.eof and not self.reconnect and session is not None and session.got_frame
                    if not finished:
                        self._record_error(str(exc))
                        logger.warning("live reader %s: stream lost: %s", self.name, exc)
                except Exception as exc:  # never let the reader die silently
                    if self._stop_event.is_set():
                        break
                    self._record_error(f"unexpected error on {self.name}: {exc!r}")
                    logger.exception("live reader %s: unexpected error", self.name)
                finally:
                    if session is not None:
                        session.close(self.name)
                if self._stop_event.is_set():
                    break

                got_frame = session is not None and session.got_frame
                if finished:
                    logger.info("live reader %s: the input ended", self.name)
                    self._set_state(SourceState.STOPPED)
                    return
                if not self.reconnect:
                    self._give_up(self.stats.last_error or f"reading {self.name} failed")
                    return
                now = self._clock()
                with self._lock:
                    if got_frame:
                        self._stats.consecutive_failures = 0
                        outage_since = now
                    else:
                        self._stats.connect_failures += 1
                        self._stats.consecutive_failures += 1
                    failures = self._stats.consecutive_failures
                    last_error = self._stats.last_error
                if self.max_failures is not None and failures >= self.max_failures:
                    self._give_up(f"gave up after {failures} consecutive failed connection attempts: {last_error}")
                    return
                outage = now - outage_since
                if self.max_outage_s is not None and outage >= self.max_outage_s:
                    self._give_up(f"gave up after {outage:.1f} s without a frame ({failures} failed "
                                  f"connection attempts): {last_error}")
                    return

                self._set_state(SourceState.RECONNECTING)
                delay = self._backoff.delay(failures)  # full jitter: uniform(0, min(cap, initial * 2**(n-1)))
                if self.max_outage_s is not None:
                    delay = min(delay, max(0.0, self.max_outage_s - outage))
                logger.debug("live reader %s: retrying in %.2f s", self.name, delay)
                if self._wait(delay) or self._stop_event.is_set():
                    break
        finally:
            if self._pending is not None:
                self._pending.close(self.name)
                self._pending = None
            logger.info("live reader %s: reader exiting (state %s)", self.name, self.state.value)

    def _open_session(self) -> _Session:
        """One connection attempt; raises :class:`LiveConnectError` with a diagnosis."""
        shown = redact_url(self.url)
        started = time.monotonic()
        dial = self._dialer(self.url, self.open_timeout_s) if self._dialer is not None else None
        try:
            container = av.open(dial.url if dial else self.url, mode="r", format=self.input_format,
                                options=self.ffmpeg_options, timeout=(self.open_timeout_s, self.stall_timeout_s))
        except Exception as exc:
            reason = dial.failure() if dial else None
            if dial is not None:
                dial.close()
            if self._stop_event.is_set():
                raise LiveConnectError(f"stopped while connecting to {shown}") from exc
            if reason:
                raise LiveConnectError(reason) from exc
            elapsed = time.monotonic() - started
            raise LiveConnectError(describe_open_error(
                exc, self.url, self.open_timeout_s, elapsed, self.input_format, probe=dial is None
            )) from exc
        if not container.streams.video:
            kinds = ", ".join(f"{s.type}/{s.codec_context.name}" for s in container.streams) or "none"
            container.close()
            if dial is not None:
                dial.close()
            raise LiveConnectError(f"not a video stream: {shown} has no video track (streams: {kinds})",
                                   "no_video_stream")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        if _LOW_DELAY_FLAG is not None and is_rtsp(self.url):
            try:
                ctx.flags = ctx.flags | _LOW_DELAY_FLAG  # the decoder is opened lazily, so this applies
            except (AttributeError, TypeError, ValueError):  # pragma: no cover
                pass
        rate = stream.average_rate or stream.guessed_rate
        with self._lock:
            changed = self._stats.codec is not None and (
                self._stats.codec, self._stats.width, self._stats.height
            ) != (ctx.name, ctx.width or None, ctx.height or None)
            self._stats.codec = ctx.name
            self._stats.width = ctx.width or None
            self._stats.height = ctx.height or None
            self._stats.fps = float(rate) if rate else None
        logger.info("live reader %s: connected: %s %sx%s @ %s fps%s", self.name, ctx.name, ctx.width, ctx.height,
                    f"{float(rate):g}" if rate else "?", " (stream format changed)" if changed else "")
        return _Session(container, stream, dial)  # type: ignore[arg-type]

    def _pump(self, session: _Session) -> Generator[VideoFrame, None, None]:
        """Demux/decode one connection until stop (returns), or EOF, error or stall (raises _SessionEnded)."""
        shown = redact_url(self.url)
        session_start = time.monotonic()
        last_progress = session_start
        next_due: float | None = None  # max_fps throttle, in stream seconds
        interval = 1.0 / self.max_fps if self.max_fps else 0.0
        last_pts: float | None = None
        try:
            for packet in session.container.demux(session.stream):
                if self._stop_event.is_set():
                    return
                now = time.monotonic()
                if now - last_progress > self.stall_timeout_s:
                    raise _SessionEnded(f"stalled: no frame decoded for {now - last_progress:.1f} s from {shown}")
                try:
                    decoded = packet.decode()
                except av.error.FFmpegError as exc:  # a corrupt packet; keep going
                    logger.debug("live reader %s: decode error: %s", self.name, exc)
                    continue
                for frame in decoded:
                    now = time.monotonic()
                    last_progress = now
                    if not session.got_frame:
                        session.got_frame = True
                        self._set_state(SourceState.RUNNING)
                    pts = float(frame.time) if frame.time is not None else now - session_start
                    with self._lock:
                        st = self._stats
                        st.frames_decoded += 1
                        st.consecutive_failures = 0
                        st.last_frame_monotonic = now
                        if (frame.width, frame.height) != (st.width, st.height):
                            logger.info("live reader %s: frame size now %dx%d (was %sx%s)", self.name,
                                        frame.width, frame.height, st.width, st.height)
                            st.width, st.height = frame.width, frame.height
                    if interval:
                        if last_pts is not None and pts < last_pts:
                            next_due = None  # timestamps went backwards: restart the schedule
                        last_pts = pts
                        if next_due is not None and pts < next_due - 1e-3:
                            with self._lock:
                                self._stats.frames_dropped += 1
                            continue
                        if next_due is None or pts - next_due >= interval:
                            next_due = pts + interval  # (re)start the schedule at this frame
                        else:
                            next_due += interval
                    if self._stop_event.is_set():
                        return
                    rgb = self._to_rgb(frame)
                    with self._lock:
                        index = self._stats.frames
                        self._stats.frames += 1
                    yield VideoFrame(index, pts, rgb)
                    last_progress = time.monotonic()  # the consumer's time is not a stall
        except _SessionEnded:
            raise
        except av.error.FFmpegError as exc:
            if self._stop_event.is_set():
                return
            silent = time.monotonic() - last_progress
            # PyAV's read timeout fires through the interrupt callback; FFmpeg may
            # report it as AVERROR_EXIT or as a generic error, so also judge by time.
            if session.dial_failure():
                message = session.dial_failure() or ""
            elif isinstance(exc, av.error.ExitError) or silent >= 0.95 * self.stall_timeout_s:
                message = f"stalled: no frame decoded for {silent:.1f} s from {shown}"
            elif isinstance(exc, av.error.EOFError):
                raise _SessionEnded(self._ended_message(shown), eof=True) from exc
            else:
                message = f"read error from {shown}: {getattr(exc, 'strerror', None) or exc}"
            raise _SessionEnded(message) from exc
        if not self._stop_event.is_set():
            raise _SessionEnded(self._ended_message(shown), eof=True)

    def _ended_message(self, shown: str) -> str:
        peer = "the camera" if is_rtsp(self.url) else "the server"
        return f"stream ended (connection closed by {peer}): {shown}" if self._network else f"stream ended: {shown}"

    def _to_rgb(self, frame: av.VideoFrame) -> np.ndarray:
        """(H, W, 3) uint8 RGB, scaled to ``max_width`` / pinned to the first frame's size as asked."""
        if self.max_width is None and not self.keep_first_size:
            return frame.to_ndarray(format="rgb24")
        size = self._out_size if self.keep_first_size and self._out_size else None
        if size is None:
            size = scaled_size(frame.width, frame.height, self.max_width)
            if self.keep_first_size:
                self._out_size = size
        return frame.to_ndarray(format="rgb24", width=size[0], height=size[1])
