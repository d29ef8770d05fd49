"""Scheduler: bounded queues, drop policy, backpressure, fair round-robin."""

from __future__ import annotations

import threading

from server.worker.scheduler import Scheduler
from server.worker.stream_session import ControlItem, FrameItem, StreamSession


def session(policy: str = "latest", queue_size: int = 2, name: str = "s") -> StreamSession:
    return StreamSession("ws", "semantic", "online", "default", policy, queue_size, lambda obj: None, session_id=name)


def item(i: int) -> FrameItem:
    return FrameItem(frame_id=i, data=b"")


class _WatchedCondition(threading.Condition):
    """The scheduler's condition variable, also setting `waiting` each time a thread starts waiting on it."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = threading.Event()

    def wait(self, timeout: float | None = None) -> bool:
        self.waiting.set()  # still holding the lock: whoever acquires it next runs after this thread is waiting
        return super().wait(timeout)


def watch_waits(sched: Scheduler) -> threading.Event:
    """Swap in a condition that reports waits: tests synchronise on "the producer is blocked" with no sleep."""
    sched._cv = _WatchedCondition()
    return sched._cv.waiting


def drain(sched: Scheduler) -> list[tuple[str, object]]:
    out = []
    while (work := sched.next(timeout=0)) is not None:
        _, s, it = work
        out.append((s.id, it.frame_id if isinstance(it, FrameItem) else it.name))
    return out


def test_latest_keeps_newest_frames_and_counts_drops() -> None:
    drops = []
    sched = Scheduler(on_drop=lambda s: drops.append(s.id))
    s = session("latest", queue_size=2)
    sched.add(s)
    for i in range(5):
        assert sched.offer(s, item(i))
    assert s.dropped == 3 and len(drops) == 3 and s.received == 5
    assert drain(sched) == [("s", 3), ("s", 4)]


def test_controls_are_never_dropped_and_keep_their_place() -> None:
    sched = Scheduler()
    s = session("latest", queue_size=1)
    sched.add(s)
    sched.offer(s, item(0))
    sched.offer(s, ControlItem("reset", lambda sess: {}))
    sched.offer(s, item(1))  # drops frame 0, not the control
    assert drain(sched) == [("s", "reset"), ("s", 1)]
    assert s.dropped == 1


def test_block_policy_refuses_offer_and_put_waits_for_room() -> None:
    sched = Scheduler()
    waiting = watch_waits(sched)
    s = session("block", queue_size=1)
    sched.add(s)
    assert sched.offer(s, item(0))
    assert not sched.offer(s, item(1))
    done = threading.Event()
    outcome: list[bool] = []

    def producer() -> None:
        outcome.append(sched.put(s, item(1)))
        done.set()

    threading.Thread(target=producer, daemon=True).start()
    assert waiting.wait(5), "put() never waited on the scheduler's condition"
    # the producer is inside wait() (it released the lock there): queue full, its frame not taken
    assert not done.is_set() and s.received == 1 and s.pending_frames == 1
    assert sched.next(timeout=0)[2].frame_id == 0  # frees the slot and wakes the producer
    assert done.wait(5) and outcome == [True]
    assert sched.next(timeout=0)[2].frame_id == 1
    assert s.dropped == 0 and s.received == 2


def test_remove_unblocks_a_waiting_producer() -> None:
    sched = Scheduler()
    waiting = watch_waits(sched)
    s = session("block", queue_size=1)
    sched.add(s)
    sched.offer(s, item(0))
    result = []
    t = threading.Thread(target=lambda: result.append(sched.put(s, item(1))), daemon=True)
    t.start()
    assert waiting.wait(5), "put() never waited on the scheduler's condition"
    assert result == []  # blocked, not refused: the stream was still open when it started waiting
    assert sched.remove(s) == 1
    t.join(5)
    assert not t.is_alive(), "remove() did not wake the blocked producer"
    assert result == [False]
    assert not sched.offer(s, item(2))


def test_round_robin_serves_streams_fairly_whatever_their_rate() -> None:
    sched = Scheduler()
    a, b, c = session("block", 10, "a"), session("block", 10, "b"), session("block", 10, "c")
    for s in (a, b, c):
        sched.add(s)
    for i in range(6):
        sched.offer(a, item(i))  # a floods
    sched.offer(b, item(100))
    sched.offer(c, item(200))
    sched.offer(c, item(201))
    order = [sid for sid, _ in drain(sched)]
    assert order[:3] == ["a", "b", "c"]
    assert order[3:5] == ["a", "c"]
    assert order[5:] == ["a"] * 4


def test_commands_go_first_and_stop_fails_pending() -> None:
    sched = Scheduler()
    s = session()
    sched.add(s)
    sched.offer(s, item(0))
    fut = sched.submit(lambda: 42)
    kind, _, f = sched.next(timeout=0)
    assert kind == "command" and f is fut
    pending_fut = sched.submit(lambda: 1)
    assert [f for _, f in sched.stop()] == [pending_fut]
    assert sched.submit(lambda: 1).exception() is not None


def test_more_frames_takes_one_head_frame_per_other_stream_of_the_lane_in_ring_order() -> None:
    sched = Scheduler()
    sessions = [StreamSession("ws", "semantic", "online", "default", "block", 4, lambda _: None) for _ in range(5)]
    for s in sessions:
        sched.add(s)
    sessions[3].lane = 1  # another lane's stream
    for s in sessions:
        for i in range(2):
            assert sched.offer(s, FrameItem(frame_id=i, data=b""))
    sessions[2].queue.appendleft(ControlItem("reset", lambda _s: None))  # its control runs first, alone
    kind, first, item = sched.next(timeout=0, lane=0)
    assert (kind, first, item.frame_id) == ("item", sessions[0], 0)
    more = sched.more_frames(0, first, limit=4)
    assert [(sessions.index(s), it.frame_id) for s, it in more] == [(1, 0), (4, 0)]
    assert sessions[1].pending_frames == 1 and sessions[2].pending_frames == 2
    assert sched.next(timeout=0, lane=0)[1] is sessions[0]  # the next round starts after the last stream taken
