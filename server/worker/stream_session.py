"""One stream's session: its queue, policy, task, adapter (owned by the device worker) and counters.

Everything a session emits (the `server.events` types) goes through its `deliver` callback, called on the
device-worker thread, in order: `FrameResult` / `FrameError` per frame, `ControlReply` per in-order control (reset,
set_task, checkpoint, restore) and finally `SessionClosed`. `deliver` must be quick and must not block (hand off to
a queue / loop).
"""

from __future__ import annotations

import itertools
import logging
import time
import uuid
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import numpy as np
import torch

from mask2former_ttt.tracking import MaskTracker
from mask2former_ttt.ttt.protocol import Adapter
from mask2former_ttt.ttt.view import TTTView, scheduled_view
from model.postprocess import InstanceFilter
from server.logging_setup import kv

log = logging.getLogger(__name__)

Source = Literal["ws", "rtsp", "job", "predict"]  # predict: a one-image stream (POST /v1/predict)
QUEUE_SIZE = 2  # frames queued per stream before its drop / backpressure policy applies (a WebSocket start: 1-64)
_ids = itertools.count()


@dataclass
class FrameItem:
    """A frame waiting in a stream's queue: encoded image bytes (WebSocket) or an RGB array (H, W, 3) uint8."""

    frame_id: Any
    data: bytes | np.ndarray
    capture_ts: float | None = None
    pts_s: float | None = None
    received: float = field(default_factory=time.perf_counter)  # when the service got it (end-to-end start)
    decode_s: float = 0.0  # decoding already spent by the source (RTSP, file)
    enqueued: float = 0.0
    decoding: Future | None = None  # the image's decode, started when it was queued (worker.decode_ahead)

    def discard(self) -> None:
        """The frame leaves its queue unprocessed (dropped, refused, stream closed): its decode is not needed."""
        if self.decoding is not None:
            self.decoding.cancel()


@dataclass
class ControlItem:
    """A stream-scoped operation run on the worker thread in order with the stream's frames.

    `fn(session)` returns the reply payload; it is never dropped by the queue policy.
    """

    name: str
    fn: Callable[["StreamSession"], dict]
    on_discard: Callable[[str], None] | None = None  # called if the stream closes before the control runs
    notify: bool = True  # deliver a ControlReply to the stream's consumer (internal controls do not)


class StreamSession:
    """State of one stream. Queue fields are guarded by the scheduler's lock; `adapter` is touched only by the
    device-worker thread; counters are written by the worker and read by anyone (plain ints)."""

    def __init__(
        self,
        source: Source,
        task: str,
        method: str,
        preset: str,
        policy: str,
        queue_size: int,
        deliver: Callable[[Any], None],
        encodings: tuple[str, ...] = (),
        session_id: str | None = None,
        on_space: Callable[[], None] | None = None,
        owner: str = "",
        instance_filter: InstanceFilter | None = None,
        ttt_view_every: int = 0,
    ) -> None:
        self.id = session_id or f"{source}-{next(_ids)}-{uuid.uuid4().hex[:8]}"
        self.source = source
        self.owner = owner  # id of the API key that opened the stream (server.auth.key_id); "" with auth off
        self.task = task
        self.method = method
        self.preset = preset
        self.instance_filter = instance_filter or InstanceFilter()  # instance / panoptic score and area minimums
        self.ttt_view_every = ttt_view_every  # every N-th result carries the TTT view; 0 = never (the default)
        self.tracker = MaskTracker()  # instance / panoptic ids that persist over the stream (worker-owned)
        self.policy = policy
        self.queue_size = queue_size
        self.deliver = deliver
        self.encodings = encodings
        self.on_space = on_space  # called (under the scheduler lock) when a queued frame leaves the queue
        self.created = time.time()
        # queue (scheduler lock)
        self.queue: deque[FrameItem | ControlItem] = deque()
        self.pending_frames = 0
        self.closed = False
        # worker-owned
        self.lane = 0  # the worker lane (thread + model replica) that runs this stream (scheduler lock)
        self.moving = False  # a move to another lane is queued (worker.rebalance)
        self.adapter: Adapter | None = None
        self.steps_in_background = False  # the adapter's steps run on the worker's step executor (schedule async)
        self.reserved_bytes = 0
        # counters
        self.received = 0
        self.processed = 0
        self.dropped = 0
        self.errors = 0
        self.rollbacks = 0
        self.memory_bytes = 0
        self.last_loss: float | None = None

    def send(self, obj: Any) -> None:
        """Hand one delivery (a `server.events` object) to the stream's consumer; a consumer that fails is logged,
        never raised: a gone client must not stop the lane (or the dispatch thread) that serves the others."""
        try:
            self.deliver(obj)
        except Exception:  # noqa: BLE001 - a gone consumer must not stop the worker
            log.warning("delivery to a stream's consumer failed", extra=kv(stream=self.id), exc_info=True)

    def ttt_view(self, frame: torch.Tensor) -> TTTView | None:
        """The TTT view of the frame just processed ((3, H, W) uint8) when the client asked for one on this frame
        (`ttt_view_every`), else None without any work; worker thread only (it runs the stream's adapter)."""
        return scheduled_view(self.adapter, frame, self.processed - 1, self.ttt_view_every)

    def stats(self) -> dict:
        """JSON-ready snapshot of the session's counters and settings."""
        return {
            "stream_id": self.id,
            "source": self.source,
            "task": self.task,
            "method": self.method,
            "preset": self.preset,
            "score_threshold": self.instance_filter.score_threshold,
            "min_area": self.instance_filter.min_area,
            "policy": self.policy,
            "queue_size": self.queue_size,
            "queued": self.pending_frames,
            "received": self.received,
            "processed": self.processed,
            "dropped": self.dropped,
            "errors": self.errors,
            "rollbacks": self.rollbacks,
            "memory_bytes": self.memory_bytes,
            "reserved_bytes": self.reserved_bytes,
            "last_loss": self.last_loss,
            "uptime_s": round(time.time() - self.created, 3),
        }
