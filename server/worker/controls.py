"""In-order stream controls (reset, checkpoint, restore, or any `fn(session)`): queued with the stream's frames,
run on its lane after the frames queued before them, answered both to the stream and on a Future.

`StreamControls` is a collaborator of `DeviceWorker`: it is given the scheduler that queues the controls and the
state store that checkpoints / restores write to."""

from __future__ import annotations

import logging
from concurrent.futures import Future
from typing import Any, Callable

from server.events import ControlReply

from server.logging_setup import kv
from server.worker.scheduler import Scheduler
from server.worker.state_store import StreamStateStore
from server.worker.stream_session import ControlItem, StreamSession

log = logging.getLogger(__name__)


class StreamControls:
    """The in-order controls of a worker's streams: queued on `scheduler`, run by the lane (`run`), replied to the
    stream (`StreamSession.send`) and on the Future the caller holds."""

    def __init__(self, scheduler: Scheduler, states: StreamStateStore) -> None:
        self.scheduler = scheduler
        self.states = states

    def control(
        self, session: StreamSession, name: str, fn: Callable[[StreamSession], dict], notify: bool = True
    ) -> Future:
        """Queue an in-order control. Its outcome is set on the returned Future (failed at once if the stream is
        closed) and, with `notify`, delivered to the session as a ControlReply."""
        fut: Future = Future()

        def run(s: StreamSession) -> dict:
            if not fut.set_running_or_notify_cancel():  # the caller gave up waiting: do not act behind its back
                raise RuntimeError(f"{name} was cancelled by its caller before it ran")
            try:
                payload = fn(s)
            except BaseException as exc:
                fut.set_exception(exc)
                raise
            fut.set_result(payload)
            return payload

        def discard(reason: str) -> None:
            if not fut.done():
                fut.set_exception(RuntimeError(reason))

        if not self.scheduler.offer(session, ControlItem(name, run, discard, notify)):
            fut.set_exception(RuntimeError(f"stream {session.id} is closed"))
        return fut

    def reset(self, session: StreamSession) -> Future:
        """Back to θ0: `{frames_before_reset}`."""

        def run(s: StreamSession) -> dict:
            s.adapter.reset()
            return {"frames_before_reset": s.processed}

        return self.control(session, "reset", run)

    def checkpoint(self, session: StreamSession) -> Future:
        """Save the stream's adapted state: `{checkpoint_id, bytes, frames}`."""
        return self.control(session, "checkpoint", self.states.save)

    def restore(self, session: StreamSession, checkpoint_id: str, caller: Any = None) -> Future:
        """Load a saved state of the same method and preset: `{checkpoint_id, frames}`. Only checkpoints of the
        stream's owner, or those `caller` (a `server.auth.Principal`) owns, are found."""
        owns = caller.owns if caller is not None else None
        return self.control(session, "restore", lambda s: self.states.restore(s, checkpoint_id, owns))

    def run(self, session: StreamSession, item: ControlItem) -> None:
        """Run a queued control on the lane (`serve_lane`'s `on_control`); its reply goes to the stream."""
        try:
            reply = ControlReply(session.id, item.name, item.fn(session))
        except Exception as exc:  # noqa: BLE001 - reported to this stream only
            log.warning("stream control failed", extra=kv(stream=session.id, control=item.name, error=str(exc)))
            reply = ControlReply(session.id, item.name, {}, f"{item.name} failed: {exc}")
        if item.notify:
            session.send(reply)

