"""Inputs of `m2f-ttt segment`: what a source is (`source_kind`, `SourceInfo`) and its frames (`open_source`).

Files are read with :mod:`mask2former_ttt.video_io`; live inputs (RTSP/HTTP/... URLs, camera devices, any
FFmpeg input with an explicit format) with the same :class:`~mask2former_ttt.live.reader.LiveReader` the
service uses for its cameras, so a stream that drops (RTSP, RTMP, SRT, UDP, TCP; see `RECONNECT_SCHEMES`) is
reconnected (with backoff), within bounds:
after `RECONNECT_MAX_FAILURES` consecutive failed attempts or `RECONNECT_MAX_OUTAGE_S` seconds without a
frame, the iteration raises `VideoError("unavailable", ...)` saying what happened.  The first connection is
made by `open_source` itself, so a wrong URL fails before any output is written.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mask2former_ttt.video_io import VideoError, VideoFrame, iter_frames, probe, redact_url

from .diagnosis import LiveConnectError
from .reader import LiveReader
from .state import SourceState, SourceStats

__all__ = ["LIVE_SCHEMES", "RECONNECT_SCHEMES", "LiveFrames", "SourceInfo", "open_live", "open_source", "source_kind"]

LIVE_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")
#: Inputs that are reconnected when they end or fail (cameras and live feeds). HTTP(S) inputs are often plain
#: files, so they end at their end, as do devices and explicit FFmpeg formats (`lavfi`, ...).
RECONNECT_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "udp://", "tcp://", "srt://")
OPEN_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 10.0  # also the stall watchdog: no frame for this long -> reconnect
RECONNECT_MAX_FAILURES = 5
RECONNECT_MAX_OUTAGE_S = 60.0
RECONNECT_BACKOFF_S = (0.5, 5.0)  # first retry delay bound, cap


@dataclass
class SourceInfo:
    """What is known about the input before decoding: kind (`file` | `stream` | `device`), frame rate, frames."""

    source: str
    kind: str
    fps: float | None
    frames: int | None
    width: int | None = None
    height: int | None = None
    codec: str | None = None


def source_kind(source: str, input_format: str | None = None) -> str:
    """`device` for /dev/video* or a v4l2 input, `stream` for URLs and explicit FFmpeg formats, else `file`."""
    if source.startswith("/dev/video") or input_format in ("v4l2", "video4linux2"):
        return "device"
    if source.lower().startswith(LIVE_SCHEMES) or input_format:
        return "stream"
    return "file"


class LiveFrames(Iterator[VideoFrame]):
    """Frames of a live input (reconnecting as needed); `stats` / `state` show the reader's counters.

    Raises `VideoError("unavailable", ...)` when the reader gives up; `close()` stops it.
    """

    def __init__(self, reader: LiveReader, max_frames: int | None = None) -> None:
        self.reader = reader
        self.max_frames = max_frames
        self._frames = reader.frames()
        self._count = 0

    @property
    def stats(self) -> SourceStats:
        return self.reader.stats

    @property
    def state(self) -> SourceState:
        return self.reader.state

    def __next__(self) -> VideoFrame:
        if self.max_frames is not None and self._count >= self.max_frames:
            self.close()
            raise StopIteration
        try:
            frame = next(self._frames)
        except StopIteration:
            self.close()
            if self.reader.state == SourceState.FAILED:
                stats = self.reader.stats
                shown = redact_url(self.reader.url)
                raise VideoError("unavailable", f"lost {shown} after {self._count} frames "
                                                f"({stats.reconnects} reconnection attempts): {stats.last_error}") from None
            raise
        self._count += 1
        return frame

    def stop(self) -> None:
        """Stop reading, from any thread: the iteration ends at the reader's next check."""
        self.reader.stop()

    def close(self) -> None:
        """Stop and close the current connection (from the iterating thread; elsewhere use `stop`)."""
        self.reader.stop()
        try:
            self._frames.close()
        except ValueError:  # "generator already executing" in another thread: it ends on its own
            pass


def open_live(source: str, input_format: str | None = None, max_width: int | None = None,
              max_frames: int | None = None, **reader_options: Any) -> tuple[SourceInfo, LiveFrames]:
    """Connect to a live input now; (what it is, its frames). `VideoError` if it cannot be opened.

    Stream URLs (`RECONNECT_SCHEMES`) are reconnected after a drop; other inputs end at their end.
    `reader_options` override the :class:`LiveReader` settings (timeouts, backoff, give-up bounds, `on_state`).
    """
    kind = source_kind(source, input_format)
    fmt = input_format or ("v4l2" if kind == "device" else None)
    if kind == "device" and not Path(source).exists():
        raise VideoError("not_found", f"no such camera device: {source}")
    low, high = RECONNECT_BACKOFF_S
    options: dict[str, Any] = dict(
        input_format=fmt, max_width=max_width, keep_first_size=True, open_timeout_s=OPEN_TIMEOUT_S,
        stall_timeout_s=READ_TIMEOUT_S, backoff_initial_s=low, backoff_max_s=high,
        max_failures=RECONNECT_MAX_FAILURES, max_outage_s=RECONNECT_MAX_OUTAGE_S,
        reconnect=source.lower().startswith(RECONNECT_SCHEMES),
    )
    options.update(reader_options)
    reader = LiveReader(source, **options)
    try:
        stats = reader.connect()
    except LiveConnectError as exc:
        raise VideoError(exc.kind, str(exc)) from exc
    info = SourceInfo(redact_url(source), kind, stats.fps, max_frames, stats.width, stats.height, stats.codec)
    return info, LiveFrames(reader, max_frames)


def open_source(source: str, input_format: str | None = None, max_width: int | None = None,
                max_frames: int | None = None, **reader_options: Any) -> tuple[SourceInfo, Iterator[VideoFrame]]:
    """(what the input is, an iterator over its frames). Files are probed first so problems surface early.

    `reader_options` apply to live inputs only (see `open_live`).
    """
    if source_kind(source, input_format) == "file":
        info = probe(source)  # VideoError: not_found | not_video | no_video_stream | corrupt | empty
        frames = info.frames if max_frames is None else min(info.frames, max_frames)
        src = SourceInfo(source, "file", info.fps, frames, info.width, info.height, info.codec)
        return src, iter_frames(source, max_width=max_width, max_frames=max_frames)
    return open_live(source, input_format, max_width, max_frames, **reader_options)
