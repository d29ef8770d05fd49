"""Scheduler contract beyond the basics: the ring after `remove`, queue counters, waking blocked threads, stop.

Synchronisation is on the scheduler's condition (see `watch_waits`) and on queues/threads with timeouts, never
on sleeps; no test asserts on how long anything took.
"""

from __future__ import annotations

import queue
import threading

from server.worker.scheduler import Scheduler
from server.worker.stream_session import ControlItem, StreamSession
from tests.server.test_scheduler import drain, item, session, watch_waits


def ring_of(*names: str, frames: int = 3) -> tuple[Scheduler, dict[str, StreamSession]]:
    sched = Scheduler()
    sessions = {}
    for n in names:
        s = session("block", queue_size=10, name=n)
        sched.add(s)
        for i in range(frames):
            assert sched.offer(s, item(i))
        sessions[n] = s
    return sched, sessions


def served(sched: Scheduler, n: int) -> list[str]:
    out = []
    for _ in range(n):
        work = sched.next(timeout=0)
        assert work is not None
        out.append(work[1].id)
    return out


def test_removing_a_stream_already_served_this_round_keeps_the_ring_order() -> None:
    sched, s = ring_of("a", "b", "c", "d")
    assert served(sched, 2) == ["a", "b"]  # c is due next
    assert sched.remove(s["a"]) == 2
    # c is still the next one (not skipped, b not served twice in a row), then the ring goes on without a
    assert served(sched, 8) == ["c", "d", "b", "c", "d", "b", "c", "d"]
    assert sched.next(timeout=0) is None


def test_removing_the_stream_due_next_at_the_end_of_the_ring_wraps_to_the_first() -> None:
    sched, s = ring_of("a", "b", "c")
    assert served(sched, 2) == ["a", "b"]  # c, the last one, is due next
    sched.remove(s["c"])
    assert served(sched, 4) == ["a", "b", "a", "b"]


def test_removing_a_stream_not_yet_served_keeps_the_ring_order() -> None:
    sched, s = ring_of("a", "b", "c", "d")
    assert served(sched, 1) == ["a"]
    sched.remove(s["c"])
    assert served(sched, 5) == ["b", "d", "a", "b", "d"]


def test_remove_discards_the_queue_and_wakes_the_space_listener() -> None:
    sched = Scheduler()
    woken: list[str] = []
    s = StreamSession(
        "rtsp",
        "semantic",
        "online",
        "default",
        "block",
        4,
        lambda obj: None,
        session_id="s",
        on_space=lambda: woken.append("space"),
    )
    sched.add(s)
    sched.offer(s, item(0))
    sched.offer(s, ControlItem("reset", lambda sess: {}))
    sched.offer(s, item(1))
    assert woken == []
    assert sched.remove(s) == 2
    assert woken == ["space"]  # a producer waiting for room (RTSP reader, job feeder) hears of it at once
    assert s.closed and s.stats()["queued"] == 0 and sched.depth == 0
    assert len(s.queue) == 0  # the discarded frames are released, not kept referenced by the closed session
    assert sched.next(timeout=0) is None


def test_removing_a_session_that_was_never_added_or_twice_is_harmless() -> None:
    sched, s = ring_of("a", "b")
    stranger = session("block", 2, "stranger")  # e.g. a stream refused at admission, closed by its handler
    assert sched.remove(stranger) == 0
    assert sched.remove(s["a"]) == 3
    assert sched.remove(s["a"]) == 0
    assert served(sched, 3) == ["b", "b", "b"]


def test_queued_counts_follow_drops_and_picks() -> None:
    sched = Scheduler()
    s = session("latest", queue_size=2)
    sched.add(s)
    for i in range(5):
        sched.offer(s, item(i))
    assert s.stats()["queued"] == 2 and sched.depth == 2 and s.dropped == 3
    sched.next(timeout=0)
    assert s.stats()["queued"] == 1 and sched.depth == 1
    sched.offer(s, item(5))
    sched.offer(s, item(6))  # full again: drops frame 4
    assert s.stats()["queued"] == 2 and s.dropped == 4
    assert drain(sched) == [("s", 5), ("s", 6)]
    assert s.stats()["queued"] == 0 and sched.depth == 0


def _blocked_consumer(sched: Scheduler) -> queue.Queue:
    """A thread in `next(timeout=30)` on an empty scheduler; returns where its work lands."""
    waiting = watch_waits(sched)
    got: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: got.put(sched.next(timeout=30)), daemon=True).start()
    assert waiting.wait(5), "next() did not wait for work on an empty scheduler"
    return got


def test_a_waiting_consumer_is_woken_by_offer() -> None:
    sched = Scheduler()
    s = session("block", 2)
    sched.add(s)
    got = _blocked_consumer(sched)
    assert got.empty()
    assert sched.offer(s, item(7))
    work = got.get(timeout=5)  # woken now, not when its 30 s wait runs out
    assert work[0] == "item" and work[2].frame_id == 7


def test_a_waiting_consumer_is_woken_by_put() -> None:
    sched = Scheduler()
    s = session("block", 2)
    sched.add(s)
    got = _blocked_consumer(sched)
    assert sched.put(s, item(8), timeout=5)
    work = got.get(timeout=5)
    assert work[0] == "item" and work[2].frame_id == 8


def test_a_waiting_consumer_is_woken_by_submit() -> None:
    sched = Scheduler()
    got = _blocked_consumer(sched)
    fut = sched.submit(lambda: 1)
    work = got.get(timeout=5)
    assert work[0] == "command" and work[2] is fut


def test_stop_wakes_a_blocked_producer_and_hands_back_unrun_commands_once() -> None:
    sched = Scheduler()
    waiting = watch_waits(sched)
    s = session("block", queue_size=1)
    sched.add(s)
    assert sched.offer(s, item(0))
    fut = sched.submit(lambda: 1)  # before the producer waits: stop() alone must wake it
    outcome: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: outcome.put(sched.put(s, item(1))), daemon=True).start()  # no timeout
    assert waiting.wait(5), "put() never waited on the scheduler's condition"
    assert [f for _, f in sched.stop()] == [fut]
    assert outcome.get(timeout=5) is False  # woken by stop, refused
    # the handed-back commands are gone from the queue: the worker never runs (or re-fails) them
    work = sched.next(timeout=0)
    assert work is None or work[0] != "command"
    assert sched.stop() == []
    assert not sched.offer(s, item(2))
