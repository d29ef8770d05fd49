"""Glue between the device-worker thread and asyncio consumers (WebSocket streams, RTSP result fan-out)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Sequence

from server.metrics import Metrics
from server.protocol import error_message, frame_error_message, result_message
from server.worker import ControlReply, DeviceWorker, FrameError, FrameItem, FrameResult, SessionClosed, StreamSession

log = logging.getLogger(__name__)


class LoopForwarder:
    """`deliver` callback for a session: forwards objects from the worker thread into an asyncio.Queue.

    Also provides `space` (an asyncio.Event) and `notify_space` (the session's `on_space`) for async backpressure.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue = asyncio.Queue()
        self.space = asyncio.Event()

    def __call__(self, obj: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, obj)
        except RuntimeError:  # loop closed: the consumer is gone
            pass

    def notify_space(self) -> None:
        try:
            self.loop.call_soon_threadsafe(self.space.set)
        except RuntimeError:
            pass


async def put_frame(worker: DeviceWorker, session: StreamSession, item: FrameItem, space: asyncio.Event) -> bool:
    """Queue `item` under the session's policy without blocking the event loop.

    `latest`: never waits (a full queue drops its oldest frame). `block`: waits for room (backpressure: the
    caller stops reading its socket meanwhile). False if the session closed.
    """
    while not worker.offer(session, item):
        if session.closed:
            return False
        space.clear()
        if worker.offer(session, item):  # re-check after clear: no lost wake-up
            return True
        await space.wait()
    return True


async def outgoing_message(obj: Any, class_names: Sequence[str], metrics: Metrics) -> dict | None:
    """The JSON message for an object delivered by the worker (None for SessionClosed).

    Results are encoded in a worker thread (RLE/PNG/JPEG are CPU work) and their encode / end-to-end latencies
    recorded.
    """
    if isinstance(obj, FrameResult):
        msg = await asyncio.get_running_loop().run_in_executor(None, result_message, obj, obj.encodings, class_names)
        metrics.observe_timings({k: msg["timings_ms"][k] / 1000 for k in ("encode", "end_to_end")})
        return msg
    if isinstance(obj, FrameError):
        return frame_error_message(obj)
    if isinstance(obj, ControlReply):
        if obj.error:
            return error_message(f"{obj.name}_failed", obj.error, stream_id=obj.stream_id)
        return {"type": obj.name, "stream_id": obj.stream_id, **obj.payload}
    if isinstance(obj, SessionClosed):
        return None
    if isinstance(obj, dict):
        return obj
    raise TypeError(f"unexpected delivery {type(obj).__name__}")
