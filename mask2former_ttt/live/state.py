"""Life cycle and counters of a live video source, shared by the reader core and the service's sources.

:class:`SourceState` and :class:`SourceStats` are defined here, below the service, so that the one live
reader (:mod:`mask2former_ttt.live.reader`) and the service's ``FrameSource`` protocol (which re-exports
them from ``server.sources.base``) speak the same types.
"""

from __future__ import annotations

import dataclasses
import enum

__all__ = ["SourceState", "SourceStats"]


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
