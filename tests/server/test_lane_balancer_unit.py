"""LaneBalancer on its own (a real Scheduler, fake adapters): the lane admission picks, when a close plans a move
and which stream moves, the move itself, and how a move that cannot happen puts the loads back."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

from server.worker.rebalance import LaneBalancer
from server.worker.scheduler import Scheduler
from server.worker.stream_session import ControlItem, StreamSession
from tests.server.svc_helpers import FakeAdapter


class Factory:
    """adapter_factory recording the replica each adapter was built on; `fail` makes it raise."""

    def __init__(self) -> None:
        self.built: list[tuple[Any, str, str, int]] = []
        self.fail = False

    def __call__(self, model: Any, method: str, preset: str, seed: int) -> FakeAdapter:
        if self.fail:
            raise RuntimeError("out of device memory")
        self.built.append((model, method, preset, seed))
        return FakeAdapter(model)


def balancer(lanes: int) -> tuple[LaneBalancer, Scheduler, Factory]:
    sched, factory = Scheduler(), Factory()
    return LaneBalancer([f"replica-{i}" for i in range(lanes)], sched, factory, 7, threading.Lock()), sched, factory


def stream(bal: LaneBalancer, sched: Scheduler, name: str, lane: int, created: float) -> StreamSession:
    """An admitted stream on `lane` (counted in the loads) whose adapter has seen 2 frames."""
    s = StreamSession("ws", "semantic", "online", "default", "block", 4, lambda obj: None, session_id=name)
    s.lane, s.created = lane, created
    s.adapter = FakeAdapter(f"replica-{lane}", total=5.0, seen=[2.0, 3.0])
    bal.load[lane] += 1
    sched.add(s)
    return s


def queued_move(s: StreamSession) -> ControlItem | None:
    moves = [it for it in s.queue if isinstance(it, ControlItem) and it.name == "move_lane"]
    assert len(moves) <= 1
    return moves[0] if moves else None


def test_pin_counts_each_admission_on_the_least_loaded_lane_and_unpin_uncounts_it() -> None:
    bal, _, _ = balancer(3)
    assert bal.load == [0, 0, 0]
    assert [bal.pin() for _ in range(4)] == [0, 1, 2, 0]
    assert bal.load == [2, 1, 1]
    bal.unpin(0)
    bal.unpin(2)
    assert bal.load == [1, 1, 0]
    assert bal.pin() == 2


@pytest.mark.parametrize("loads", [(1, 1), (2, 1), (1, 0)])
def test_lanes_less_than_two_streams_apart_move_nothing(loads: tuple[int, int]) -> None:
    bal, sched, _ = balancer(2)
    streams = {}
    for lane, n in enumerate(loads):
        for k in range(n):
            s = stream(bal, sched, f"{lane}-{k}", lane, created=float(k))
            streams[s.id] = s
    bal.rebalance(streams)
    assert all(queued_move(s) is None and not s.moving for s in streams.values())
    assert bal.load == list(loads)


def test_a_two_stream_gap_moves_the_newest_stream_of_the_busiest_lane_to_the_idlest(caplog) -> None:
    bal, sched, factory = balancer(3)
    old = stream(bal, sched, "old", 0, created=1.0)
    new = stream(bal, sched, "new", 0, created=2.0)
    newer_elsewhere = stream(bal, sched, "elsewhere", 2, created=3.0)  # the newest, but not on the busiest lane
    streams = {s.id: s for s in (old, new, newer_elsewhere)}
    bal.rebalance(streams)
    move = queued_move(new)
    assert move is not None and queued_move(old) is None and queued_move(newer_elsewhere) is None
    assert move.notify is False  # internal: the stream's consumer gets no reply for it
    assert new.moving and bal.load == [1, 1, 1]  # counted at once
    bal.rebalance(streams)  # a second close before the move ran plans nothing more
    assert queued_move(old) is None and bal.load == [1, 1, 1]
    with caplog.at_level(logging.INFO, logger="server.worker.rebalance"):
        assert move.fn(new) == {"lane": 1}
    assert factory.built == [("replica-1", "online", "default", 7)]
    assert new.lane == 1 and not new.moving
    assert new.adapter.model == "replica-1" and new.adapter.total == 5.0 and len(new.adapter.seen) == 2
    assert "stream moved to another lane" in caplog.messages


def test_a_move_whose_stream_closes_first_is_undone() -> None:
    bal, sched, _ = balancer(2)
    a, b = stream(bal, sched, "a", 0, 1.0), stream(bal, sched, "b", 0, 2.0)
    bal.rebalance({"a": a, "b": b})
    assert b.moving and bal.load == [1, 1]
    sched.remove(b)  # the queued move is discarded
    assert not b.moving and bal.load == [2, 0] and b.lane == 0


def test_a_move_refused_by_a_closed_queue_is_undone_at_once() -> None:
    bal, sched, _ = balancer(2)
    a, b = stream(bal, sched, "a", 0, 1.0), stream(bal, sched, "b", 0, 2.0)
    sched.remove(b)  # closed, not yet unregistered by the worker
    bal.rebalance({"a": a, "b": b})
    assert not b.moving and bal.load == [2, 0]


def test_a_move_that_cannot_build_the_adapter_leaves_the_stream_where_it_was() -> None:
    bal, sched, factory = balancer(2)
    a, b = stream(bal, sched, "a", 0, 1.0), stream(bal, sched, "b", 0, 2.0)
    bal.rebalance({"a": a, "b": b})
    move, adapter = queued_move(b), b.adapter
    factory.fail = True
    with pytest.raises(RuntimeError, match="out of device memory"):
        move.fn(b)
    assert b.lane == 0 and b.adapter is adapter and not b.moving
    assert bal.load == [2, 0]
