"""Stream controls of the Ray backend's front-end (`RayDeviceWorker`): queued in order with the stream's frames,
run on the actor that owns the stream. `fn(session)` travels pickled (what it touches on disk must be storage the
actor shares); the service's checkpoint / restore by id are saved and checked in the front-end's state store, and
only the adapter state crosses to the actor."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any, Callable

from server.jobs.resume import RESTORE
from server.worker.controls import StreamControls
from server.worker.scheduler import Scheduler
from server.worker.state_store import StreamStateStore, state_blob
from server.worker.stream_session import StreamSession


def load_adapter_state(state: dict) -> Callable[[StreamSession], dict]:
    """Control body run on the owning actor: load an adapter `state_dict` into the stream."""

    def run(session: StreamSession) -> dict:
        session.adapter.load_state_dict(state)
        return {}

    return run


def cause(exc: BaseException) -> BaseException:
    """The exception raised inside an actor (Ray wraps it in a RayTaskError that prints the remote traceback)."""
    return getattr(exc, "cause", None) or exc


def mirror(session: StreamSession, view: dict) -> None:
    """Copy the owner's counters, task and encodings onto the front-end's session (its stats, its consumers)."""
    session.task, session.encodings = view["task"], tuple(view["encodings"])
    for name in ("processed", "rollbacks", "last_loss", "memory_bytes", "reserved_bytes"):
        setattr(session, name, view[name])


class RemoteControls(StreamControls):
    """`StreamControls` whose bodies run on the stream's owning actor: a collaborator of `RayDeviceWorker`, given
    its scheduler, its state store and `backend` (a `RayBackend`)."""

    def __init__(self, scheduler: Scheduler, states: StreamStateStore, backend: Any) -> None:
        super().__init__(scheduler, states)
        self.backend = backend

    # ---- controls: run on the owner ------------------------------------------------------------------------
    def control(
        self, session: StreamSession, name: str, fn: Callable[[StreamSession], dict], notify: bool = True
    ) -> Future:
        """Queue `fn(session)` in order with the stream's frames; it runs on the owning actor."""

        def run(s: StreamSession) -> dict:
            payload = self._on_owner(s, name, fn)
            if name in ("reset", "restore", RESTORE):  # its state changed: a failover must not undo that
                self.backend.checkpoint_now(s.id)
            return payload

        return super().control(session, name, run, notify)

    def checkpoint(self, session: StreamSession) -> Future:
        """Save the stream's adapted state here, under an id (`{checkpoint_id, bytes, frames}`)."""
        return super().control(
            session, "checkpoint", lambda s: self.states.save(s, self._on_owner(s, "checkpoint", state_blob))
        )

    def restore(self, session: StreamSession, checkpoint_id: str, caller: Any = None) -> Future:
        """Load a checkpoint saved here (checked here: owner, method, preset) into the stream on its owner."""
        owns = caller.owns if caller is not None else None

        def run(s: StreamSession) -> dict:
            blob = self.states.load(s, checkpoint_id, owns)
            self._on_owner(s, "restore", load_adapter_state(blob["state"]))
            self.backend.checkpoint_now(s.id)
            return {"checkpoint_id": checkpoint_id, "frames": blob["frames"]}

        return super().control(session, "restore", run)

    def _on_owner(self, session: StreamSession, name: str, fn: Callable[[StreamSession], dict]) -> Any:
        try:
            payload, view = self.backend.call(session.id, "run_control", name, fn)
        except Exception as exc:
            raise cause(exc) from None
        mirror(session, view)
        return payload
