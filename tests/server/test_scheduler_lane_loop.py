"""Scheduler details a worker lane relies on, without a model: which lane takes a command, cancelled decodes of
frames that leave a queue unprocessed, the space listener and blocked producers on every pick, re-pinning, and
the lane loop (`serve_lane`): commands, controls, single frames and cross-stream batches.

The lane loop runs on a daemon thread whose callbacks set its stop event once the lane's queues are empty; no
sleeps, no timing assertions.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future

from server.worker.scheduler import Scheduler, serve_lane
from server.worker.stream_session import ControlItem, FrameItem, StreamSession
from tests.server.test_scheduler import item, session, watch_waits

WAIT_S = 10


def decoding_frame(frame_id: int) -> FrameItem:
    """A frame whose decode is still pending (as `DecodeAhead.start` leaves it)."""
    return FrameItem(frame_id=frame_id, data=b"", decoding=Future())


# ---- commands and lanes ----------------------------------------------------------------------------------------
def test_a_command_for_one_lane_is_not_taken_by_another() -> None:
    sched = Scheduler()
    fut = sched.submit(lambda: "on lane 1", lane=1)
    assert sched.next(timeout=0, lane=0) is None
    kind, _, got = sched.next(timeout=0, lane=1)
    assert kind == "command" and got is fut


def test_a_lane_skips_commands_of_other_lanes_and_takes_its_own_in_order() -> None:
    sched = Scheduler()
    other = sched.submit(lambda: None, lane=1)
    mine = sched.submit(lambda: None, lane=0)
    anyone = sched.submit(lambda: None)
    assert [sched.next(timeout=0, lane=0)[2] for _ in range(2)] == [mine, anyone]
    assert sched.next(timeout=0, lane=1)[2] is other


# ---- frames that leave their queue unprocessed ----------------------------------------------------------------
def test_frames_that_leave_the_queue_unprocessed_have_their_decode_cancelled() -> None:
    sched = Scheduler()
    latest = session("latest", queue_size=1, name="latest")
    sched.add(latest)
    dropped, kept = decoding_frame(0), decoding_frame(1)
    assert sched.offer(latest, dropped) and sched.offer(latest, kept)  # the second drops the first
    assert dropped.decoding.cancelled() and not kept.decoding.cancelled()
    sched.remove(latest)  # closing discards what is still queued
    assert kept.decoding.cancelled()


def test_a_refused_frame_has_its_decode_cancelled_whatever_refused_it() -> None:
    sched = Scheduler()
    full = session("block", queue_size=1, name="full")
    sched.add(full)
    assert sched.offer(full, item(0))
    refused_full = decoding_frame(1)
    assert not sched.offer(full, refused_full)
    timed_out = decoding_frame(2)
    assert not sched.put(full, timed_out, timeout=0)
    closed = session("block", queue_size=1, name="closed")
    sched.add(closed)
    sched.remove(closed)
    refused_closed = decoding_frame(3)
    assert not sched.offer(closed, refused_closed)
    assert refused_full.decoding.cancelled() and timed_out.decoding.cancelled()
    assert refused_closed.decoding.cancelled()


def test_a_frame_taken_for_processing_keeps_its_decode() -> None:
    sched = Scheduler()
    s = session("latest", queue_size=2)
    sched.add(s)
    frame = decoding_frame(0)
    assert sched.offer(s, frame)
    assert sched.next(timeout=0)[2] is frame
    assert not frame.decoding.cancelled()


def test_closing_a_stream_tells_each_queued_control_it_will_not_run() -> None:
    sched = Scheduler()
    s = session("block", queue_size=4)
    sched.add(s)
    told: list[str] = []
    sched.offer(s, ControlItem("checkpoint", lambda sess: {}, on_discard=told.append))
    sched.offer(s, ControlItem("internal", lambda sess: {}))  # no listener: nothing to tell
    sched.offer(s, item(0))
    assert sched.remove(s) == 1
    assert told == ["stream s closed before checkpoint ran"]


# ---- room in a queue --------------------------------------------------------------------------------------------
def spaced_session(name: str, room: list[str], queue_size: int = 2) -> StreamSession:
    return StreamSession("rtsp", "semantic", "online", "default", "block", queue_size, lambda obj: None,
                         session_id=name, on_space=lambda: room.append(name))


def test_the_space_listener_hears_of_every_frame_a_lane_takes_but_not_of_controls() -> None:
    sched = Scheduler()
    room: list[str] = []
    a, b = spaced_session("a", room), spaced_session("b", room)
    for s in (a, b):
        sched.add(s)
    sched.offer(a, ControlItem("reset", lambda sess: {}))
    sched.offer(a, item(0))
    sched.offer(b, item(0))
    assert sched.next(timeout=0)[2].name == "reset"
    assert room == []
    _, taken, _ = sched.next(timeout=0)  # b's frame (a was served this round)
    assert taken is b and room == ["b"]
    _, first, _ = sched.next(timeout=0)
    assert first is a and room == ["b", "a"]


def test_frames_batched_with_another_stream_free_room_for_their_producers() -> None:
    sched = Scheduler()
    room: list[str] = []
    a, b = spaced_session("a", room, queue_size=1), spaced_session("b", room, queue_size=1)
    for s in (a, b):
        sched.add(s)
        assert sched.offer(s, item(0))
    waiting = watch_waits(sched)
    outcome: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: outcome.put(sched.put(b, item(1))), daemon=True).start()  # b is full
    assert waiting.wait(WAIT_S), "put() never waited on the scheduler's condition"
    waiting.clear()
    _, taken, _ = sched.next(timeout=0)  # wakes the producer, which finds b still full and waits again
    assert taken is a and room == ["a"]
    assert waiting.wait(WAIT_S), "the producer did not wait again"
    more = sched.more_frames(0, a, limit=1)
    assert [(s.id, it.frame_id) for s, it in more] == [("b", 0)] and room == ["a", "b"]
    assert outcome.get(timeout=WAIT_S) is True  # woken by the batch taking b's frame, not by a timeout
    assert b.pending_frames == 1


def test_more_frames_before_any_round_starts_at_the_head_of_the_ring() -> None:
    sched = Scheduler()
    streams = [session("block", queue_size=2, name=n) for n in "abc"]
    for s in streams:
        sched.add(s)
        sched.offer(s, item(0))
    more = sched.more_frames(0, streams[2], limit=1)
    assert [s.id for s, _ in more] == ["a"]


# ---- moving a stream to another lane ------------------------------------------------------------------------------
def test_repin_swaps_under_the_lock_and_wakes_the_new_lane() -> None:
    sched = Scheduler()
    s = session("block", queue_size=2)
    sched.add(s)
    sched.offer(s, item(0))  # queued for lane 0
    waiting = watch_waits(sched)
    got: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: got.put(sched.next(timeout=30, lane=1)), daemon=True).start()
    assert waiting.wait(WAIT_S), "the lane-1 consumer did not wait for work"  # nothing of its own yet
    swapped: list[int] = []
    sched.repin(s, 1, lambda: swapped.append(s.lane))
    assert swapped == [0]  # the swap runs before the stream changes lane
    kind, taken, frame = got.get(timeout=WAIT_S)  # woken by the repin, not by its 30 s timeout
    assert (kind, taken, frame.frame_id) == ("item", s, 0)
    assert sched.next(timeout=0, lane=0) is None


# ---- the lane loop ---------------------------------------------------------------------------------------------------
class Lane:
    """`serve_lane` on a daemon thread, recording what it hands over; stops once the queues of `streams` (the
    lane's) are empty."""

    def __init__(self, sched: Scheduler, streams: list[StreamSession], lane: int = 0, batch: int | None = None,
                 batched: bool = True) -> None:
        self.calls: list[tuple[str, list]] = []
        self.stop = threading.Event()
        self.streams = streams
        kwargs: dict = {} if batch is None else {"batch": batch}
        on_frames = self._frames if batched else None
        self.thread = threading.Thread(
            target=serve_lane, args=(sched, lane, self.stop, self._control, self._frame, on_frames), kwargs=kwargs,
            daemon=True,
        )

    def _record(self, kind: str, what: list) -> None:
        self.calls.append((kind, what))
        if not any(s.queue for s in self.streams):
            self.stop.set()

    def _control(self, s: StreamSession, control: ControlItem) -> None:
        self._record("control", [(s.id, control.name)])

    def _frame(self, s: StreamSession, frame: FrameItem) -> None:
        self._record("frame", [(s.id, frame.frame_id)])

    def _frames(self, work: list[tuple[StreamSession, FrameItem]]) -> None:
        self._record("frames", [(s.id, f.frame_id) for s, f in work])

    def run(self) -> list[tuple[str, list]]:
        self.thread.start()
        self.thread.join(WAIT_S)
        assert not self.thread.is_alive(), f"the lane did not get its work; it had {self.calls}"
        return self.calls


def streams_of(names: str = "abc", frames: int = 1) -> tuple[Scheduler, list[StreamSession]]:
    sched = Scheduler()
    streams = [session("block", queue_size=4, name=n) for n in names]
    for s in streams:
        sched.add(s)
        for i in range(frames):
            assert sched.offer(s, item(i))
    return sched, streams


def test_the_lane_runs_commands_and_hands_back_their_results_and_errors() -> None:
    sched = Scheduler()
    done = sched.submit(lambda: 41 + 1)

    def explode() -> None:
        raise KeyError("boom")

    failed = sched.submit(explode)
    s = session("block", queue_size=2)
    sched.add(s)
    sched.offer(s, item(0))
    assert Lane(sched, [s]).run() == [("frame", [("s", 0)])]  # after both commands
    assert done.result(0) == 42
    assert isinstance(failed.exception(0), KeyError)


def test_the_lane_does_not_run_a_command_its_caller_cancelled() -> None:
    sched = Scheduler()
    ran: list[str] = []
    cancelled = sched.submit(lambda: ran.append("cancelled"))
    assert cancelled.cancel()
    s = session("block", queue_size=2)
    sched.add(s)
    sched.offer(s, item(0))
    Lane(sched, [s]).run()
    assert ran == []


def test_the_lane_hands_controls_and_frames_over_in_queue_order() -> None:
    sched = Scheduler()
    s = session("block", queue_size=4)
    sched.add(s)
    sched.offer(s, item(0))
    sched.offer(s, ControlItem("reset", lambda sess: {}))
    sched.offer(s, item(1))
    assert Lane(sched, [s]).run() == [("frame", [("s", 0)]), ("control", [("s", "reset")]),
                                            ("frame", [("s", 1)])]


def test_without_a_batch_size_the_lane_takes_frames_one_by_one_even_with_a_batch_handler() -> None:
    sched, streams = streams_of()
    calls = Lane(sched, streams).run()
    assert calls == [("frame", [("a", 0)]), ("frame", [("b", 0)]), ("frame", [("c", 0)])]


def test_a_batch_of_two_takes_one_more_stream_head_frame() -> None:
    sched, streams = streams_of()
    calls = Lane(sched, streams, batch=2).run()
    assert calls == [("frames", [("a", 0), ("b", 0)]), ("frame", [("c", 0)])]  # c alone: nothing left to join


def test_a_batch_of_three_takes_the_next_streams_in_ring_order() -> None:
    sched, streams = streams_of("abcd", frames=2)
    calls = Lane(sched, streams, batch=3).run()
    assert calls == [("frames", [("a", 0), ("b", 0), ("c", 0)]), ("frames", [("d", 0), ("a", 1), ("b", 1)]),
                     ("frames", [("c", 1), ("d", 1)])]


def test_a_batch_size_without_a_batch_handler_takes_frames_one_by_one() -> None:
    sched, streams = streams_of()
    calls = Lane(sched, streams, batch=4, batched=False).run()
    assert calls == [("frame", [("a", 0)]), ("frame", [("b", 0)]), ("frame", [("c", 0)])]


def test_a_lane_serves_only_its_own_streams() -> None:
    sched, (a, b, c) = streams_of()
    b.lane = 1
    assert Lane(sched, [a, c], lane=0).run() == [("frame", [("a", 0)]), ("frame", [("c", 0)])]
    assert Lane(sched, [b], lane=1).run() == [("frame", [("b", 0)])]
