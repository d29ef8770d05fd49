"""Bounded per-stream queues and fair round-robin selection, under one lock shared with the device worker.

- `offer` never blocks: under policy `latest` a full queue drops its oldest *frame* (controls are never
  dropped) and counts the drop; under `block` it refuses (returns False).
- `put` blocks the producer until there is room (policy `block`: lossless backpressure).
- `next(lane=i)` hands worker lane i either a command meant for it (or for any lane) first, or the next item of
  the next of *its* streams (`session.lane == i`) in ring order that has work, so every stream with queued frames
  is served once per round regardless of its frame rate, and a stream's items only ever go to its own lane (one
  writer per stream, frames in order).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future
from typing import Any, Callable

from server.worker.stream_session import ControlItem, FrameItem, StreamSession

Work = tuple[str, Any, Any]


class Scheduler:
    """Queues of all sessions plus the worker's command queue."""

    def __init__(self, on_drop: Callable[[StreamSession], None] | None = None) -> None:
        self._cv = threading.Condition()
        self._ring: list[StreamSession] = []
        self._next: dict[int, int] = {}  # per lane: ring position to look at first
        self._commands: deque[tuple[Callable[[], Any], Future, int | None]] = deque()
        self._stopped = False
        self._on_drop = on_drop

    # ---- membership -------------------------------------------------------------------------------------
    def add(self, session: StreamSession) -> None:
        with self._cv:
            self._ring.append(session)

    def remove(self, session: StreamSession) -> int:
        """Close `session`'s queue; returns how many queued frames were discarded. Wakes blocked producers;
        queued controls are told they will not run (`ControlItem.on_discard`)."""
        with self._cv:
            session.closed = True
            discarded = session.pending_frames
            controls = [item for item in session.queue if isinstance(item, ControlItem)]
            for item in session.queue:
                if isinstance(item, FrameItem):
                    item.discard()
            session.queue.clear()
            session.pending_frames = 0
            if session.on_space is not None:
                session.on_space()
            if session in self._ring:
                i = self._ring.index(session)
                self._ring.pop(i)
                for lane, nxt in self._next.items():
                    nxt -= 1 if i < nxt else 0
                    self._next[lane] = 0 if nxt >= len(self._ring) else nxt
            self._cv.notify_all()
        for control in controls:  # outside the lock: their callbacks may run client code
            if control.on_discard is not None:
                control.on_discard(f"stream {session.id} closed before {control.name} ran")
        return discarded

    # ---- producers --------------------------------------------------------------------------------------
    def offer(self, session: StreamSession, item: FrameItem | ControlItem) -> bool:
        """Queue without blocking. False if the session is closed, or full under policy `block`."""
        with self._cv:
            if session.closed or self._stopped:
                self._refused(item)
                return False
            if isinstance(item, FrameItem):
                if session.pending_frames >= session.queue_size:
                    if session.policy != "latest":
                        self._refused(item)
                        return False
                    self._drop_oldest_frame(session)
                self._count_frame(session, item)
            session.queue.append(item)
            self._cv.notify_all()
            return True

    @staticmethod
    def _count_frame(session: StreamSession, item: FrameItem) -> None:
        session.pending_frames += 1
        session.received += 1
        item.enqueued = time.perf_counter()

    def put(self, session: StreamSession, item: FrameItem, timeout: float | None = None) -> bool:
        """Queue a frame, waiting while the queue is full (backpressure). False if closed or timed out."""
        with self._cv:
            ok = self._cv.wait_for(
                lambda: session.closed or self._stopped or session.pending_frames < session.queue_size, timeout
            )
            if not ok or session.closed or self._stopped:
                self._refused(item)
                return False
            self._count_frame(session, item)
            session.queue.append(item)
            self._cv.notify_all()
            return True

    @staticmethod
    def _refused(item: FrameItem | ControlItem) -> None:
        if isinstance(item, FrameItem):
            item.discard()  # a refused frame's decode is not needed (the producer may offer it again)

    def _drop_oldest_frame(self, session: StreamSession) -> None:
        for i, queued in enumerate(session.queue):
            if isinstance(queued, FrameItem):
                del session.queue[i]
                queued.discard()
                session.pending_frames -= 1
                session.dropped += 1
                if self._on_drop is not None:
                    self._on_drop(session)
                return

    # ---- worker side ------------------------------------------------------------------------------------
    def submit(self, fn: Callable[[], Any], lane: int | None = None) -> Future:
        """Run `fn` on worker lane `lane` (None: the first free lane) before that lane's next frame; the Future
        gets its result or exception."""
        fut: Future = Future()
        with self._cv:
            if self._stopped:
                fut.set_exception(RuntimeError("the device worker is stopped"))
                return fut
            self._commands.append((fn, fut, lane))
            self._cv.notify_all()
        return fut

    def next(self, timeout: float, lane: int = 0) -> Work | None:
        """("command", fn, future) or ("item", session, item) for worker lane `lane`, or None after `timeout`
        without work."""
        with self._cv:
            work = self._pick(lane)
            if work is None:
                self._cv.wait(timeout)
                work = self._pick(lane)
            return work

    def _pick(self, lane: int) -> Work | None:
        for k, (fn, fut, target) in enumerate(self._commands):
            if target is None or target == lane:
                del self._commands[k]
                return ("command", fn, fut)
        n = len(self._ring)
        start = self._next.get(lane, 0)
        for k in range(n):
            i = (start + k) % n
            session = self._ring[i]
            if session.lane == lane and session.queue:
                item = session.queue.popleft()
                if isinstance(item, FrameItem):
                    session.pending_frames -= 1
                    self._cv.notify_all()  # room for a blocked producer
                    if session.on_space is not None:
                        session.on_space()
                self._next[lane] = (i + 1) % n
                return ("item", session, item)
        return None

    def more_frames(self, lane: int, taken: StreamSession, limit: int) -> list[tuple[StreamSession, FrameItem]]:
        """Up to `limit` more frames for worker lane `lane` to process together with `taken`'s: the head frame of
        each further stream of the lane whose queue starts with a frame, at most one per stream, in ring order from
        where `next` left off (so a batch is one round of the round-robin: fairness is kept). A stream whose queue
        starts with a control is skipped: its control runs in order, before its next frame."""
        out: list[tuple[StreamSession, FrameItem]] = []
        with self._cv:
            n = len(self._ring)
            start = self._next.get(lane, 0)
            for k in range(n):
                if len(out) >= limit:
                    break
                i = (start + k) % n
                session = self._ring[i]
                if session is taken or session.lane != lane or not session.queue:
                    continue
                if not isinstance(session.queue[0], FrameItem):
                    continue
                item = session.queue.popleft()
                session.pending_frames -= 1
                if session.on_space is not None:
                    session.on_space()
                self._next[lane] = (i + 1) % n
                out.append((session, item))
            if out:
                self._cv.notify_all()  # room for blocked producers
        return out

    def repin(self, session: StreamSession, lane: int, swap: Callable[[], None]) -> None:
        """Move `session` to worker lane `lane`: `swap()` (e.g. replacing its adapter) runs under the lock, so no
        lane picks the session's next item before both have happened."""
        with self._cv:
            swap()
            session.lane = lane
            self._cv.notify_all()

    def stop(self) -> list[tuple[Callable[[], Any], Future]]:
        """Refuse new work, wake everyone; returns commands that never ran."""
        with self._cv:
            self._stopped = True
            pending = [(fn, fut) for fn, fut, _ in self._commands]
            self._commands.clear()
            self._cv.notify_all()
            return pending

    @property
    def depth(self) -> int:
        """Frames queued over all sessions."""
        with self._cv:
            return sum(s.pending_frames for s in self._ring)


def serve_lane(
    scheduler: Scheduler,
    lane: int,
    stop: threading.Event,
    on_control: Callable[[StreamSession, ControlItem], None],
    on_frame: Callable[[StreamSession, FrameItem], None],
    on_frames: Callable[[list[tuple[StreamSession, FrameItem]]], None] | None = None,
    batch: int = 1,
) -> None:
    """A worker lane's loop until `stop`: commands run here (their Future gets the result or exception), a stream's
    controls and frames go to `on_control` / `on_frame`, one at a time, in the order `next(lane=lane)` gives them.
    With `batch` > 1 and `on_frames`, a frame is handed over together with the head frames of up to `batch` - 1
    other streams of the lane (`Scheduler.more_frames`), one per stream."""
    while not stop.is_set():
        work = scheduler.next(timeout=0.25, lane=lane)
        if work is None:
            continue
        kind, a, b = work
        if kind == "command":
            if b.set_running_or_notify_cancel():
                try:
                    b.set_result(a())
                except BaseException as exc:  # noqa: BLE001 - handed to the caller
                    b.set_exception(exc)
        elif isinstance(b, ControlItem):
            on_control(a, b)
        elif batch > 1 and on_frames is not None:
            more = scheduler.more_frames(lane, a, batch - 1)
            on_frames([(a, b)] + more) if more else on_frame(a, b)
        else:
            on_frame(a, b)
