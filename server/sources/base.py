"""Source abstraction shared by the frame sources of the streaming server.

A *source* pulls video from somewhere (an RTSP camera, a file, ...) in its own
thread and hands every delivered frame to a :class:`FrameSink`.  Its life is
described by :class:`SourceState`, and its counters by :class:`SourceStats`.

Thread model: sinks and state callbacks are called from the source's worker
thread (state callbacks also from the thread that calls ``stop()``); they must
be quick and must not call ``stop()`` and then wait for it themselves.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

# One definition for the service and the live reader underneath it (mask2former_ttt.live).
from mask2former_ttt.live.state import SourceState, SourceStats

__all__ = ["FrameSink", "FrameSource", "SourceState", "SourceStats", "StateCallback"]


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


@runtime_checkable
class FrameSource(Protocol):
    """What the server needs from any frame source."""

    def start(self) -> None: ...

    def stop(self, timeout: float = 2.0) -> bool: ...

    @property
    def state(self) -> SourceState: ...

    @property
    def stats(self) -> SourceStats: ...
