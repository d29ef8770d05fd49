"""The device worker: the single owner of the model, per-stream sessions and their fair scheduling (what it delivers:
`server.events`, re-exported here)."""

from server.events import ControlReply, FrameError, FrameResult, SessionClosed
from server.worker.admission import CapacityError
from server.worker.device_worker import DeviceWorker
from server.worker.stream_session import ControlItem, FrameItem, StreamSession

__all__ = [
    "CapacityError",
    "ControlItem",
    "ControlReply",
    "DeviceWorker",
    "FrameError",
    "FrameItem",
    "FrameResult",
    "SessionClosed",
    "StreamSession",
]
