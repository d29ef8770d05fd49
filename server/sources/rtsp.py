"""RTSP camera source: pulls, decodes and delivers frames with PyAV.

:class:`RtspSource` runs one daemon thread per camera.  The thread

* opens the URL with FFmpeg's RTSP demuxer over TCP, tuned for low latency;
* decodes the first video stream only and converts frames to ``(H, W, 3)``
  ``uint8`` RGB arrays for the sink, optionally throttled to ``max_fps``;
* reconnects on its own when the stream ends, errors out or stalls, with
  exponential backoff and full jitter; codec or resolution changes across
  reconnects are picked up (``stats`` follows the latest frame);
* gives up (state ``FAILED``) after ``max_failures`` consecutive failed
  connection attempts, with a ``last_error`` that says what is wrong with the
  URL (connection refused, host unreachable / not resolvable, 404 stream not
  found, no video track, timeout, ...).

FFmpeg options (checked against the FFmpeg bundled with PyAV 18, libavformat 62):
the RTSP demuxer's socket I/O timeout is ``timeout`` in microseconds;
the old ``stimeout`` name no longer exists (removed in FFmpeg 5).

``stop()`` returns promptly from any state: backoff waits are interruptible,
and blocking FFmpeg calls are bounded by the open/read timeouts (PyAV's
interrupt callback); a worker still blocked in such a call when ``stop()``
returns exits on its own within that bound and never calls the sink again.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import random
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping

import av
import av.error
import numpy as np

from mask2former_ttt.video_io import redact_url

from .base import FrameSink, SourceState, SourceStats, StateCallback

__all__ = ["RtspSource", "RtspConnectError", "check_url_allowed", "redact_url"]

logger = logging.getLogger(__name__)

DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322}

#: How long the post-failure TCP probe used to explain an error may take.
_PROBE_TIMEOUT_S = 1.0

try:  # PyAV >= 12 exposes the codec flag enum here.
    from av.codec.context import Flags as _CodecFlags

    _LOW_DELAY_FLAG: object | None = _CodecFlags.low_delay
except (ImportError, AttributeError):  # pragma: no cover - older/newer PyAV
    _LOW_DELAY_FLAG = None


class RtspConnectError(RuntimeError):
    """A connection attempt failed; the message is meant for humans (and ``last_error``)."""


# --------------------------------------------------------------------------- URL helpers


def _host_matches(host: str, pattern: str) -> bool:
    """Match one host against an allowlist entry.

    Entries are exact host names / IP addresses (case-insensitive), ``*.suffix``
    wildcards (matching any sub-domain, not the bare suffix), or CIDR networks
    such as ``10.0.0.0/8`` (matching IP-literal hosts only).
    """
    pattern = pattern.strip().lower().strip("[]")
    host = host.lower()
    if not pattern:
        return False
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    if "/" in pattern:
        try:
            network = ipaddress.ip_network(pattern, strict=False)
            return ipaddress.ip_address(host) in network
        except ValueError:
            return False
    try:  # normalise IP spellings (e.g. IPv6 zero compression)
        return ipaddress.ip_address(host) == ipaddress.ip_address(pattern)
    except ValueError:
        return host == pattern


def check_url_allowed(
    url: str,
    allowed_schemes: Iterable[str] = ("rtsp", "rtsps"),
    allowed_hosts: list[str] | None = None,
) -> urllib.parse.SplitResult:
    """Validate a client-supplied camera URL; raise ``ValueError`` if it is not allowed.

    Args:
        url: the URL, e.g. ``rtsp://user:pw@10.0.0.7:554/stream1``.
        allowed_schemes: accepted schemes (case-insensitive).
        allowed_hosts: if not None, the host must match one entry: an exact
            name or IP, a ``*.example.com`` wildcard, or a CIDR network
            (``192.168.0.0/16``).  ``None`` allows any host.

    Returns:
        The parsed URL.

    Raises:
        ValueError: with a message naming the offending part (passwords are redacted).
    """
    if not isinstance(url, str) or not url.strip():
        raise ValueError("camera URL is empty")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise ValueError("camera URL must not contain whitespace or control characters")
    shown = redact_url(url)
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"camera URL {shown!r} is malformed: {exc}") from None
    schemes = tuple(s.lower() for s in allowed_schemes)
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        raise ValueError(
            f"camera URL scheme {scheme or '(none)'!r} is not allowed in {shown!r}; "
            f"allowed schemes: {', '.join(schemes)}"
        )
    host = parts.hostname
    if not host:
        raise ValueError(f"camera URL {shown!r} has no host")
    if port == 0:
        raise ValueError(f"camera URL {shown!r} has an invalid port 0")
    if allowed_hosts is not None and not any(_host_matches(host, p) for p in allowed_hosts):
        raise ValueError(
            f"camera host {host!r} is not in the allowed hosts list ({', '.join(allowed_hosts) or 'empty'})"
        )
    return parts


# --------------------------------------------------------------------------- errors


def _probe_tcp(host: str, port: int, timeout: float) -> str | None:
    """Try a plain TCP connect to explain a failure; None if the port answers."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return f"cannot resolve host name {host!r} ({exc.strerror})"
    last: str | None = None
    for family, socktype, proto, _name, addr in infos[:2]:
        try:
            with socket.socket(family, socktype, proto) as sock:
                sock.settimeout(timeout)
                sock.connect(addr)
            return None
        except ConnectionRefusedError:
            return f"connection refused by {host}:{port} (nothing is listening there)"
        except TimeoutError:
            last = f"host {host}:{port} does not answer (unreachable or filtered)"
        except OSError as exc:
            if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EHOSTDOWN, errno.EADDRNOTAVAIL):
                last = f"host {host}:{port} is unreachable ({exc.strerror})"
            else:
                last = f"cannot connect to {host}:{port} ({exc.strerror or exc})"
    return last


def _describe_open_error(
    exc: BaseException, url: str, host: str, port: int, open_timeout_s: float, elapsed_s: float
) -> str:
    """Turn an exception from ``av.open`` into a clear, URL-specific message.

    ``elapsed_s`` is how long the attempt took: PyAV's open timeout surfaces as a
    generic FFmpeg error (often "Invalid data"), so a timeout is recognised by time.
    """
    shown = redact_url(url)
    if isinstance(exc, av.error.HTTPNotFoundError):
        path = urllib.parse.urlsplit(url).path or "/"
        return f"stream not found (RTSP 404 Not Found): the server has no stream at path {path!r}: {shown}"
    if isinstance(exc, av.error.HTTPUnauthorizedError):
        return f"authentication failed (RTSP 401 Unauthorized) for {shown}"
    if isinstance(exc, av.error.HTTPForbiddenError):
        return f"access denied (RTSP 403 Forbidden) for {shown}"
    if isinstance(exc, av.error.HTTPError | av.error.HTTPClientError | av.error.HTTPServerError):
        return f"RTSP server error for {shown}: {getattr(exc, 'strerror', None) or exc}"
    if isinstance(exc, av.error.ConnectionRefusedError | ConnectionRefusedError):
        return f"connection refused by {host}:{port} (nothing is listening there): {shown}"
    timed_out = isinstance(exc, av.error.ExitError | TimeoutError | av.error.TimeoutError) or (
        elapsed_s >= 0.95 * open_timeout_s
    )
    # Generic errors (EIO, "invalid data", interrupts): ask the network what is wrong.
    probe = _probe_tcp(host, port, min(_PROBE_TIMEOUT_S, max(0.1, open_timeout_s)))
    if probe is not None:
        return f"{probe}: {shown}"
    if timed_out:
        return (
            f"timed out after {open_timeout_s:g} s opening {shown}: the port accepts TCP "
            "connections but no RTSP answer came back"
        )
    detail = getattr(exc, "strerror", None) or str(exc)
    return f"cannot open {shown} (host reachable, but not a working RTSP stream): {detail}"


# --------------------------------------------------------------------------- the source


class _SessionEnded(Exception):
    """Internal: the current connection is over (EOF, stall, demux error)."""


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
            frame counts as failed); ``None`` retries forever.
        on_state: optional callback called with each new :class:`SourceState`.
        ffmpeg_options: extra/override options for ``av.open`` (strings).
        name: label for logs and the thread name (defaults to the redacted URL).

    Raises:
        ValueError: if the URL is not an rtsp/rtsps URL or an argument is out of range.
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
        on_state: StateCallback | Callable[[SourceState], None] | None = None,
        *,
        ffmpeg_options: Mapping[str, str] | None = None,
        name: str | None = None,
    ) -> None:
        parts = check_url_allowed(url)
        if max_fps is not None and max_fps <= 0:
            raise ValueError(f"max_fps must be > 0 or None, got {max_fps}")
        if open_timeout_s <= 0 or stall_timeout_s <= 0:
            raise ValueError("open_timeout_s and stall_timeout_s must be > 0")
        if backoff_initial_s < 0 or backoff_max_s < backoff_initial_s:
            raise ValueError("need 0 <= backoff_initial_s <= backoff_max_s")
        if max_failures is not None and max_failures < 1:
            raise ValueError(f"max_failures must be >= 1 or None, got {max_failures}")

        self.url = url
        self.name = name or redact_url(url)
        self._host = parts.hostname or ""
        self._port = parts.port or DEFAULT_PORTS[parts.scheme.lower()]
        self._on_frame = on_frame
        self._on_state = on_state
        self.max_fps = max_fps
        self.open_timeout_s = float(open_timeout_s)
        self.stall_timeout_s = float(stall_timeout_s)
        self.backoff_initial_s = float(backoff_initial_s)
        self.backoff_max_s = float(backoff_max_s)
        self.max_failures = max_failures
        self._extra_options = dict(ffmpeg_options or {})

        self._lock = threading.Lock()
        self._transition_lock = threading.RLock()
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._state = SourceState.STOPPED
        self._stats = SourceStats()
        self._rng = random.Random()

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
    def ffmpeg_options(self) -> dict[str, str]:
        """Options passed to ``av.open`` (FFmpeg AVOptions, all strings)."""
        options = {
            "rtsp_transport": "tcp",
            # RTSP demuxer socket I/O timeout, microseconds ("stimeout" before FFmpeg 5).
            "timeout": str(int(max(self.open_timeout_s, self.stall_timeout_s) * 1_000_000)),
            "fflags": "nobuffer",
            "flags": "low_delay",
            # Keep stream probing short: the SDP carries the codec parameters.
            "analyzeduration": "500000",
            "probesize": "500000",
            "max_delay": "500000",
        }
        options.update(self._extra_options)
        return options

    def start(self) -> None:
        """Start the worker thread (returns immediately). A source can be started once."""
        with self._lock:
            if self._thread is not None:
                raise RuntimeError(f"RtspSource {self.name} was already started")
            self._thread = threading.Thread(target=self._run, name=f"rtsp-source[{self.name}]", daemon=True)
        self._set_state(SourceState.CONNECTING)
        logger.info("rtsp source %s: starting", self.name)
        self._thread.start()

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
        self._stop_event.set()
        with self._lock:
            thread = self._thread
            already_final = self._state.is_terminal
        if not already_final:
            self._set_state(SourceState.STOPPED)
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

    def _set_state(self, state: SourceState) -> None:
        # _transition_lock makes "change + notify" atomic, so callbacks see the
        # transitions in the order they happened (stop() races the worker).
        with self._transition_lock:
            with self._lock:
                current = self._state
                if current == state or current == SourceState.FAILED:
                    return  # no repeats; FAILED is final
                if self._stop_event.is_set() and state != SourceState.STOPPED:
                    return  # once stopping, only STOPPED may be entered
                self._state = state
            logger.info("rtsp source %s: state -> %s", self.name, state.value)
            if self._on_state is not None:
                try:
                    self._on_state(state)
                except Exception:
                    logger.exception("rtsp source %s: on_state callback raised", self.name)

    def _record_error(self, message: str) -> None:
        with self._lock:
            self._stats.last_error = message

    def _run(self) -> None:
        first_attempt = True
        try:
            while not self._stop_event.is_set():
                if not first_attempt:
                    self._set_state(SourceState.RECONNECTING)
                    with self._lock:
                        self._stats.reconnects += 1
                first_attempt = False

                got_frame = False
                try:
                    got_frame = self._session()
                except RtspConnectError as exc:
                    if self._stop_event.is_set():
                        break
                    self._record_error(str(exc))
                    logger.warning("rtsp source %s: connect failed: %s", self.name, exc)
                except _SessionEnded as exc:
                    got_frame = bool(exc.args[1]) if len(exc.args) > 1 else False
                    if self._stop_event.is_set():
                        break
                    self._record_error(str(exc.args[0]))
                    logger.warning("rtsp source %s: stream lost: %s", self.name, exc.args[0])
                except Exception as exc:  # never let the worker die silently
                    if self._stop_event.is_set():
                        break
                    self._record_error(f"unexpected error on {self.name}: {exc!r}")
                    logger.exception("rtsp source %s: unexpected error", self.name)
                if self._stop_event.is_set():
                    break

                with self._lock:
                    if got_frame:
                        self._stats.consecutive_failures = 0
                    else:
                        self._stats.connect_failures += 1
                        self._stats.consecutive_failures += 1
                    failures = self._stats.consecutive_failures
                    last_error = self._stats.last_error
                if self.max_failures is not None and failures >= self.max_failures:
                    message = f"gave up after {failures} consecutive failed connection attempts: {last_error}"
                    self._record_error(message)
                    logger.error("rtsp source %s: %s", self.name, message)
                    self._set_state(SourceState.FAILED)
                    return

                self._set_state(SourceState.RECONNECTING)
                # Full jitter: uniform(0, min(cap, initial * 2**(n-1))) for the n-th consecutive failure.
                ceiling = min(self.backoff_max_s, self.backoff_initial_s * (2.0 ** max(0, failures - 1)))
                delay = self._rng.uniform(0.0, ceiling)
                logger.debug("rtsp source %s: retrying in %.2f s", self.name, delay)
                if self._stop_event.wait(delay):
                    break
        finally:
            logger.info("rtsp source %s: worker exiting (state %s)", self.name, self.state.value)

    def _open(self) -> av.container.InputContainer:
        options = self.ffmpeg_options
        started = time.monotonic()
        try:
            container = av.open(
                self.url, mode="r", options=options, timeout=(self.open_timeout_s, self.stall_timeout_s)
            )
        except Exception as exc:
            if self._stop_event.is_set():
                raise RtspConnectError(f"stopped while connecting to {redact_url(self.url)}") from exc
            elapsed = time.monotonic() - started
            raise RtspConnectError(
                _describe_open_error(exc, self.url, self._host, self._port, self.open_timeout_s, elapsed)
            ) from exc
        return container  # type: ignore[return-value]

    def _session(self) -> bool:
        """One connection: open, decode until it ends. Returns True if a frame was decoded.

        Raises:
            RtspConnectError: the connection could not be established.
            _SessionEnded: the connection ended (args: message, got_frame).
        """
        container = self._open()
        got_frame = False
        try:
            if self._stop_event.is_set():
                return False
            if not container.streams.video:
                kinds = ", ".join(f"{s.type}/{s.codec_context.name}" for s in container.streams) or "none"
                raise RtspConnectError(
                    f"not a video stream: {redact_url(self.url)} has no video track (streams: {kinds})"
                )
            stream = container.streams.video[0]
            ctx = stream.codec_context
            if _LOW_DELAY_FLAG is not None:
                try:
                    ctx.flags = ctx.flags | _LOW_DELAY_FLAG  # the decoder is opened lazily, so this applies
                except (AttributeError, TypeError, ValueError):  # pragma: no cover
                    pass
            rate = stream.average_rate or stream.guessed_rate
            with self._lock:
                changed = self._stats.codec is not None and (
                    self._stats.codec,
                    self._stats.width,
                    self._stats.height,
                ) != (ctx.name, ctx.width or None, ctx.height or None)
                self._stats.codec = ctx.name
                self._stats.width = ctx.width or None
                self._stats.height = ctx.height or None
                self._stats.fps = float(rate) if rate else None
            logger.info(
                "rtsp source %s: connected: %s %sx%s @ %s fps%s",
                self.name,
                ctx.name,
                ctx.width,
                ctx.height,
                f"{float(rate):g}" if rate else "?",
                " (stream format changed)" if changed else "",
            )
            got_frame = self._pump(container, stream)
            raise _SessionEnded(f"stream ended (connection closed by the camera): {redact_url(self.url)}", got_frame)
        finally:
            try:
                container.close()
            except Exception:  # pragma: no cover - best effort
                logger.debug("rtsp source %s: error closing container", self.name, exc_info=True)

    def _pump(self, container: av.container.InputContainer, stream: av.VideoStream) -> bool:
        """Demux/decode until EOF, error, stall or stop. Returns True if a frame was decoded."""
        got_frame = False
        session_start = time.monotonic()
        last_progress = session_start
        next_due: float | None = None  # max_fps throttle, in stream seconds
        interval = 1.0 / self.max_fps if self.max_fps else 0.0
        last_pts: float | None = None
        try:
            for packet in container.demux(stream):
                if self._stop_event.is_set():
                    return got_frame
                now = time.monotonic()
                if now - last_progress > self.stall_timeout_s:
                    raise _SessionEnded(
                        f"stalled: no frame decoded for {now - last_progress:.1f} s from {redact_url(self.url)}",
                        got_frame,
                    )
                try:
                    frames = packet.decode()
                except av.error.FFmpegError as exc:  # a corrupt packet; keep going
                    logger.debug("rtsp source %s: decode error: %s", self.name, exc)
                    continue
                for frame in frames:
                    now = time.monotonic()
                    last_progress = now
                    if not got_frame:
                        got_frame = True
                        self._set_state(SourceState.RUNNING)
                    pts = frame.time
                    if pts is None:
                        pts = now - session_start
                    pts = float(pts)
                    with self._lock:
                        st = self._stats
                        st.frames_decoded += 1
                        st.consecutive_failures = 0
                        st.last_frame_monotonic = now
                        if (frame.width, frame.height) != (st.width, st.height):
                            logger.info(
                                "rtsp source %s: frame size now %dx%d (was %sx%s)",
                                self.name,
                                frame.width,
                                frame.height,
                                st.width,
                                st.height,
                            )
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
                    self._deliver(frame.to_ndarray(format="rgb24"), pts)
        except _SessionEnded:
            raise
        except av.error.FFmpegError as exc:
            if self._stop_event.is_set():
                return got_frame
            silent = time.monotonic() - last_progress
            # PyAV's read timeout fires through the interrupt callback; FFmpeg may
            # report it as AVERROR_EXIT or as a generic error, so also judge by time.
            if isinstance(exc, av.error.ExitError) or silent >= 0.95 * self.stall_timeout_s:
                message = f"stalled: no frame decoded for {silent:.1f} s from {redact_url(self.url)}"
            elif isinstance(exc, av.error.EOFError):
                message = f"stream ended (connection closed by the camera): {redact_url(self.url)}"
            else:
                message = f"read error from {redact_url(self.url)}: {getattr(exc, 'strerror', None) or exc}"
            raise _SessionEnded(message, got_frame) from exc
        return got_frame

    def _deliver(self, array: np.ndarray, pts: float) -> None:
        if self._stop_event.is_set():
            return
        with self._lock:
            index = self._stats.frames
            self._stats.frames += 1
        try:
            self._on_frame(array, pts, index)
        except Exception:
            with self._lock:
                self._stats.sink_errors += 1
            logger.exception("rtsp source %s: on_frame sink raised (frame %d)", self.name, index)
