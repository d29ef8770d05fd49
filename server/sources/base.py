"""Source abstraction shared by the frame sources of the streaming server.

A *source* pulls video from somewhere (an RTSP camera, a file, ...) in its own
thread and hands every delivered frame to a :class:`FrameSink`.  Its life is
described by :class:`SourceState`, and its counters by :class:`SourceStats`.

Thread model: sinks and state callbacks are called from the source's worker
thread (state callbacks also from the thread that calls ``stop()``); they must
be quick and must not call ``stop()`` and then wait for it themselves.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["FrameSink", "FrameSource", "SourceState", "SourceStats", "StateCallback"]


class SourceState(str, enum.Enum):
    """Life cycle of a source.

    ``CONNECTING``   -- first connection attempt in progress.
    ``RUNNING``      -- connected and frames are being decoded.
    ``RECONNECTING`` -- the stream was lost (or a connect failed); retrying with backoff.
    ``FAILED``       -- gave up (too many consecutive failures); terminal, see ``stats.last_error``.
    ``STOPPED``      -- ``stop()`` was called (or the source was never started); terminal.
    """

    CONNECTING = "connecting"
    RUNNING = "running"
    RECONNECTING = "reconnecting"
    FAILED = "failed"
    STOPPED = "stopped"

    @property
    def is_terminal(self) -> bool:
        """True for states a source never leaves (``FAILED``, ``STOPPED``)."""
        return self in (SourceState.FAILED, SourceState.STOPPED)


@runtime_checkable
class FrameSink(Protocol):
    """Receives decoded frames.

    ``frame`` is an ``(H, W, 3)`` ``uint8`` RGB array owned by the callee;
    ``pts_seconds`` is the frame's presentation time in seconds on the stream's
    clock (it may restart from about zero after a reconnect); ``frame_index``
    counts delivered frames from 0 over the whole life of the source (it keeps
    increasing across reconnects).
    """

    def __call__(self, frame: np.ndarray, pts_seconds: float, frame_index: int) -> None: ...


class StateCallback(Protocol):
    """Called with the new state on every state change."""

    def __call__(self, state: SourceState) -> None: ...


@dataclasses.dataclass
class SourceStats:
    """Counters and stream facts of a source (``source.stats`` returns a copy).

    Attributes:
        frames: frames delivered to the sink.
        frames_decoded: frames decoded (delivered + dropped).
        frames_dropped: frames decoded but not delivered because of ``max_fps``.
        reconnects: connection attempts made after the first one (each retry counts).
        connect_failures: connection attempts that failed or ended without a single frame.
        consecutive_failures: such failures since the last frame was decoded.
        sink_errors: exceptions raised by the sink (logged and swallowed).
        last_error: human-readable description of the latest problem, or None.
        codec: codec name of the current (latest) video stream, e.g. ``"h264"``.
        width: frame width in pixels of the latest frame (or stream header).
        height: frame height in pixels of the latest frame (or stream header).
        fps: nominal frame rate advertised by the stream, if known.
        last_frame_monotonic: ``time.monotonic()`` when the latest frame was decoded.
    """

    frames: int = 0
    frames_decoded: int = 0
    frames_dropped: int = 0
    reconnects: int = 0
    connect_failures: int = 0
    consecutive_failures: int = 0
    sink_errors: int = 0
    last_error: str | None = None
    codec: str | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    last_frame_monotonic: float | None = None

    def as_dict(self) -> dict[str, object]:
        """Plain-dict view, handy for JSON status endpoints and metrics."""
        return dataclasses.asdict(self)


@runtime_checkable
class FrameSource(Protocol):
    """What the server needs from any frame source."""

    def start(self) -> None: ...

    def stop(self, timeout: float = 2.0) -> bool: ...

    @property
    def state(self) -> SourceState: ...

    @property
    def stats(self) -> SourceStats: ...
