"""What the device worker delivers for a stream, in order: `FrameResult` / `FrameError` per frame, `ControlReply`
per in-order control, and finally `SessionClosed`.

A leaf: the worker (`server.worker`) produces these, the wire formats (`server.wire.outbound`) encode them, and both
backends deliver the same objects (a Ray actor returns the `FrameResult` itself - it pickles - and the front-end
encodes it), so results are encoded in one place. Nothing here imports `server.worker` or `server.wire`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from mask2former_ttt.ttt.frame_step import FrameStep
    from mask2former_ttt.ttt.view import TTTView


@dataclass
class FrameResult:
    """A processed frame: `step` is what `step_frame` returned (`step.result`: the Semantic/Instance/Panoptic
    result on the CPU; `step.record()`: the results layout's `ttt` and `timings_ms` fields, timings with
    queue/decode/ttt/predict/postprocess); `image` is the decoded RGB frame (for overlays)."""

    stream_id: str
    frame_id: Any
    index: int
    task: str
    image: np.ndarray
    step: FrameStep
    encodings: tuple[str, ...]
    received: float
    capture_ts: float | None
    pts_s: float | None
    dropped: int
    memory_bytes: int
    ttt_view: TTTView | None = None  # only on the frames a client asked for (`ttt_view` every N results)


@dataclass
class FrameError:
    """A frame that could not be processed (`code`: bad_image | adapter_error); the stream goes on."""

    stream_id: str
    frame_id: Any
    code: str
    message: str


@dataclass
class ControlReply:
    """Outcome of an in-order control: `payload` on success, `error` otherwise."""

    stream_id: str
    name: str
    payload: dict
    error: str | None = None


@dataclass
class SessionClosed:
    """Last thing a session delivers."""

    stream_id: str
    reason: str


Delivery = FrameResult | FrameError | ControlReply | SessionClosed

__all__ = ["ControlReply", "Delivery", "FrameError", "FrameResult", "SessionClosed"]
