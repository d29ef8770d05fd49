"""Keeping streams spread over the worker lanes.

A stream is pinned to a lane (its adapter is bound to that lane's model replica), and admission picks the
least-loaded lane; when streams close, lanes can end up uneven (3 streams on one, 1 on the other: the three get
a third of a lane each). After each close, while the busiest lane holds two streams more than the idlest, one of
its streams moves: an in-order control on its old lane (so it runs between that stream's frames) rebuilds the
adapter on the target lane's replica from `state_dict()` - the stream continues exactly where it was - and then
re-pins the stream, so its next items go to the new lane.

`LaneBalancer` is a collaborator of `DeviceWorker`: it keeps the lanes' loads and is given the model replicas, the
scheduler, the adapter factory and the worker's registry lock (sessions, admission and loads change together).
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

from mask2former_ttt.ttt.step_executor import StepExecutorClient
from server.logging_setup import kv
from server.worker.scheduler import Scheduler
from server.worker.stream_session import ControlItem, StreamSession

log = logging.getLogger(__name__)


class LaneBalancer:
    """Streams pinned to each lane (`load`), admission's lane choice (`pin`) and the moves after closes."""

    def __init__(
        self,
        models: list[Any],
        scheduler: Scheduler,
        adapter_factory: Callable[..., Any],
        seed: int,
        registry: threading.Lock,
    ) -> None:
        self.models = models  # one model replica per lane
        self.scheduler = scheduler
        self.adapter_factory = adapter_factory
        self.seed = seed
        self._registry = registry  # held by callers of `pin` / `unpin`; taken here by `rebalance` and moves
        self.load = [0] * len(models)  # streams pinned to each lane (admitted or being admitted)

    def pin(self) -> int:
        """The least-loaded lane, counted for a stream being admitted (caller holds the registry lock)."""
        lane = min(range(len(self.load)), key=lambda i: self.load[i])
        self.load[lane] += 1
        return lane

    def unpin(self, lane: int) -> None:
        """A stream left `lane` (closed, or its admission failed; caller holds the registry lock)."""
        self.load[lane] -= 1

    def rebalance(self, sessions: dict[str, StreamSession]) -> None:
        """Queue one move from the busiest lane to the idlest if they differ by two streams or more (`sessions`:
        the worker's open streams, read under the registry lock)."""
        with self._registry:
            loads = self.load
            busiest = max(range(len(loads)), key=lambda lane: loads[lane])
            idlest = min(range(len(loads)), key=lambda lane: loads[lane])
            if loads[busiest] - loads[idlest] < 2:
                return
            movable = [s for s in sessions.values() if s.lane == busiest and not s.moving]
            if not movable:
                return
            session = max(movable, key=lambda s: s.created)  # the newest: the oldest streams stay put
            session.moving = True
            loads[busiest] -= 1
            loads[idlest] += 1  # counted at once, so that concurrent closes do not plan a second move

        def undo(reason: str = "") -> None:  # the stream closed before the move ran: it never left `busiest`
            with self._registry:
                loads[idlest] -= 1
                loads[busiest] += 1
                session.moving = False

        item = ControlItem("move_lane", lambda s: self._move(s, idlest), on_discard=undo, notify=False)
        if not self.scheduler.offer(session, item):
            undo()

    def _move(self, session: StreamSession, target: int) -> dict:
        """On the stream's current lane: rebuild its adapter on `target`'s replica and re-pin it there."""
        old = session.adapter
        try:
            moved = self.adapter_factory(self.models[target], session.method, session.preset, self.seed)
            moved.load_state_dict(old.state_dict())
        except Exception:
            with self._registry:  # stays where it is
                self.load[target] -= 1
                self.load[session.lane] += 1
                session.moving = False
            raise
        source = session.lane
        self.scheduler.repin(session, target, lambda: setattr(session, "adapter", moved))
        if isinstance(old, StepExecutorClient):  # its work on a step executor (asynchronous schedule) ends here
            old.close()
        session.moving = False
        log.info("stream moved to another lane", extra=kv(stream=session.id, lane_from=source, lane_to=target))
        return {"lane": target}
