"""A camera that lost its connection waits without holding the worker, and resumes where it was.

While the camera's source reconnects (with backoff, up to `M2F_RTSP_RETRY_FOR_S`), the stream is `waiting`: its
adapted state is saved through the worker's state store (`checkpoint`), and its session is closed, which frees its
stream slot, its lane and its adapted tensors. When frames come again, a new session under the same id is admitted
and the saved state restored into it (then the checkpoint is deleted), so adaptation continues, not from θ0. If
the service is full at that moment the stream keeps waiting and tries again with capped exponential backoff.

`CameraWaits.settle` brings one stream in line with its source's state; it runs on the event loop, one call at a
time per stream, and may be called after every state change (it does nothing when there is nothing to do).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from mask2former_ttt.live.backoff import Backoff
from server.camera_errors import DIAGNOSIS, camera_error
from server.logging_setup import kv
from server.worker import CapacityError, StreamSession

log = logging.getLogger(__name__)

WAITING_REASON = "camera waiting for its connection"  # SessionClosed reason of a suspended session (not published)
ADMIT_BACKOFF = Backoff(1.0, 60.0)  # between re-admission attempts while the service is full
Sleep = Callable[[float], Awaitable[Any]]


class CameraWaits:
    """Suspends and resumes camera streams on `worker` (a DeviceWorker or the Ray backend's worker)."""

    def __init__(self, worker: Any, sleep: Sleep = asyncio.sleep, backoff: Backoff = ADMIT_BACKOFF) -> None:
        self.worker = worker
        self.sleep = sleep
        self.backoff = backoff

    async def settle(self, stream: Any, on_change: Callable[[], None]) -> None:
        """Suspend `stream` while its source reconnects, resume it once the source runs; `on_change()` after each
        change of what the stream holds."""
        async with stream.settling:
            state = _value(stream.source)
            if state == "reconnecting" and not stream.waiting and not stream.released:
                if await self._suspend(stream):
                    on_change()
            elif state == "running" and stream.waiting and not stream.released:
                await self._resume(stream, on_change)

    async def _suspend(self, stream: Any) -> bool:
        """Save the adapted state, then close the session; False (the session kept) when the save fails."""
        session: StreamSession = stream.session
        checkpoint_id = None
        if session.processed:
            try:
                saved = await asyncio.wrap_future(self.worker.checkpoint(session))
            except Exception as exc:  # noqa: BLE001 - a full quota keeps the stream on the worker
                log.warning("camera state not saved; the stream keeps its slot",
                            extra=kv(stream=stream.id, error=str(exc)))
                return False
            checkpoint_id = saved["checkpoint_id"]
        stream.checkpoint_id = checkpoint_id
        stream.waiting = True
        await asyncio.wrap_future(self.worker.close_session(session, WAITING_REASON, ended=False))
        log.info("camera waiting", extra=kv(stream=stream.id, checkpoint=checkpoint_id))
        return True

    async def _resume(self, stream: Any, on_change: Callable[[], None]) -> None:
        """Admit a new session under the stream's id and restore the saved state; retries while the service is full."""
        attempt = 0
        while _value(stream.source) == "running" and stream.waiting and not stream.released:
            session: StreamSession = stream.new_session()
            try:
                await asyncio.wrap_future(self.worker.open_session(session))
            except CapacityError as exc:
                attempt += 1
                stream.wait_reason = f"{exc}; retrying"
                on_change()
                await self.sleep(self.backoff.delay(attempt))
                continue
            if stream.released:  # deleted or failed while admitting
                await asyncio.wrap_future(self.worker.close_session(session, "deleted"))
                return
            if stream.checkpoint_id is not None:
                restored = await asyncio.wrap_future(self.worker.restore(session, stream.checkpoint_id))
                session.processed = int(restored["frames"])
                self._forget_checkpoint(stream, session)
            stream.session, stream.waiting, stream.wait_reason = session, False, None
            log.info("camera resumed", extra=kv(stream=stream.id, frames=session.processed))
            on_change()
            return

    def end(self, stream: Any) -> None:
        """Start the retention clock of a waiting stream's saved state (its session is already closed)."""
        index = getattr(getattr(self.worker, "states", None), "index", None)
        if stream.waiting and index is not None:
            index.stream_ended(stream.session.id)

    def _forget_checkpoint(self, stream: Any, session: StreamSession) -> None:
        try:
            self.worker.states.index.delete(stream.checkpoint_id, lambda owner: owner == session.owner)
        except Exception:  # noqa: BLE001 - retention deletes it later
            log.warning("resumed camera's checkpoint not deleted", extra=kv(stream=stream.id), exc_info=True)
        stream.checkpoint_id = None


def announce(stream: Any) -> None:
    """A `state` message to the stream's subscribers when its state changed since the last one (any thread); the
    reason is the service's (full) or the camera's, as `server.camera_errors` lets each subscriber see it."""
    value = stream.state
    if value == stream.announced:
        return
    stream.announced = value
    stats = getattr(stream.source, "stats", None)
    public = stream.wait_reason or camera_error(stats, None)
    diagnosis = stream.wait_reason or getattr(stats, "last_error", None)
    stream.fwd({"type": "state", "stream_id": stream.id, "state": value, "last_error": public, DIAGNOSIS: diagnosis})


def _value(source: Any) -> str:
    state = getattr(source, "state", None)
    return getattr(state, "value", str(state))
