"""The queue side of the frame path for asyncio producers and consumers: frames into a stream's queue with its
policy (`put_frame`), and worker deliveries back onto the event loop (`LoopForwarder`)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from server.worker import DeviceWorker, FrameItem, StreamSession

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
