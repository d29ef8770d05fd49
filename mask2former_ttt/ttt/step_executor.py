"""The asynchronous schedule's step executor: one background thread that takes the TTT steps of many streams, so
that no prediction waits for a step (`TTTConfig.schedule` "async"; the stream's side is ttt/async_schedule.py).

A stream hands each frame to its `StreamSteps` queue after predicting it. The frames go into the stream's window
when the executor next works on the stream; a frame whose step is due asks for one step. When a stream's steps
fall behind (a new due frame arrives while the previous one's step has not started), the older step is skipped,
never the frame: one step is taken, on the newest frames, and the skipped ones are counted (`StreamSteps.counts`).
Streams with a step waiting are served in fair round-robin order, one step at a time.

Threads: the executor thread owns a stream's training state (window, weights, optimizer, guard, generator) while
it has work of that stream; the stream's own thread gets it back by `StreamSteps.quiesce` (the in-flight step
finishes, queued ones are dropped, their frames handed back for the window). Nothing else passes between the
threads but the queue and the weights a step publishes (ttt/published.py).

Devices: on the CPU the steps run on the executor thread with torch's intra-op threads, whose count is
process-wide in torch (`torch.set_num_threads` from any thread sets it for all), so the step thread uses the count
the worker's lanes set; it does not take its own. On CUDA the thread issues its work on a low-priority
`torch.cuda.Stream` after the work its frames came from, and waits for it before a step's weights are published;
where no side stream can be made, it uses the current stream. The executor runs its forwards on its own replica
of the model (`model`): a module replica must not be used by two threads at once (ttt/tensor_swap.py).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import threading
from collections import deque
from dataclasses import dataclass
from typing import Iterator, Protocol, runtime_checkable

import torch
from torch import nn

from mask2former_ttt.ttt.stats import Theta0View

log = logging.getLogger(__name__)


@dataclass
class QueuedFrame:
    """A predicted frame on its way into its stream's window: x (3, h, w) uint8 at the working resolution, θ0's
    view of it (what its prediction learnt about θ0 on it: ttt/guard.py) and its index in the stream."""

    x: torch.Tensor
    view: Theta0View
    index: int


class StepWork(Protocol):
    """A stream's side of the executor: what runs on the executor thread."""

    def run_queued(self, frames: list[QueuedFrame], due: int | None) -> None:
        """The frames (oldest first) into the window, then, when `due` (the index of the newest frame whose step is
        due) is not None, one step on the window's newest frames and the weights it leaves published."""
        ...


@runtime_checkable
class StepExecutorClient(Protocol):
    """An adapter that can take its steps on a `StepExecutor` (the asynchronous schedule)."""

    @property
    def wants_step_executor(self) -> bool:
        """Whether its steps run on an executor (`TTTConfig.schedule` "async" and it adapts)."""
        ...

    def use_step_executor(self, executor: "StepExecutor") -> None:
        """Take its steps on `executor` from now on (before its first frame, or on a state it is about to load)."""
        ...

    def close(self) -> None:
        """Stop its work on the executor (bounded wait for an in-flight step); the adapter is not used again."""
        ...


class StreamSteps:
    """One stream's queue on a `StepExecutor` (fields guarded by the executor's lock)."""

    def __init__(self, executor: "StepExecutor", work: StepWork, limit: int) -> None:
        self.executor = executor
        self.work = work
        self.inbox: deque[QueuedFrame] = deque(maxlen=limit)  # frames not yet in the window (newest `limit`)
        self.due: int | None = None  # index of the newest frame whose step waits to start
        self.queued = False  # in the executor's round-robin queue
        self.running = False  # the executor is working on this stream
        self.closed = False
        self.skipped = 0  # steps never taken: superseded by a newer frame's, or dropped by a quiesce
        self.errors = 0  # steps that raised

    def submit(self, frame: QueuedFrame, due: bool) -> None:
        """Hand a predicted frame to the executor (`due`: its step is due)."""
        self.executor.submit(self, frame, due)

    def quiesce(self) -> list[QueuedFrame]:
        """Wait for the in-flight step and drop the queued one: the frames not yet in the window, oldest first."""
        return self.executor.quiesce(self)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until the stream's queued step has been taken (or the executor stopped); at most `timeout` s.
        False when one is still queued or running."""
        return self.executor.flush(self, timeout)

    def close(self, timeout: float | None = None) -> bool:
        """No more work for this stream; waits at most `timeout` s for an in-flight step. False when it is still
        running."""
        return self.executor.close_stream(self, timeout)

    def counts(self) -> tuple[int, int]:
        """(skipped steps, failed steps) so far."""
        with self.executor.lock:
            return self.skipped, self.errors


class StepExecutor:
    """One thread taking the steps of every stream opened on it (`open`), round-robin; `stop` ends it.

    `model`: the shared model the streams adapt; the executor keeps its own replica for their step forwards."""

    def __init__(self, model: nn.Module, name: str = "ttt-steps", join_timeout: float = 10.0) -> None:
        self.model = copy.deepcopy(model)
        self.device = next(model.parameters()).device
        self.join_timeout = join_timeout
        self.lock = threading.Condition()
        self._ready: deque[StreamSteps] = deque()
        self._stopped = False
        self.side_stream = _side_stream(self.device)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._stopped

    def open(self, work: StepWork, limit: int) -> StreamSteps:
        """A queue for one stream whose steps `work` runs (`limit`: its window size)."""
        return StreamSteps(self, work, limit)

    def submit(self, steps: StreamSteps, frame: QueuedFrame, due: bool) -> None:
        with self.lock:
            steps.inbox.append(frame)
            if not due:
                return
            if steps.due is not None:
                steps.skipped += 1  # the previous frame's step has not started: this frame's supersedes it
            steps.due = frame.index
            if not steps.queued and not steps.running and not steps.closed and not self._stopped:
                steps.queued = True
                self._ready.append(steps)
                self.lock.notify_all()

    def quiesce(self, steps: StreamSteps) -> list[QueuedFrame]:
        with self.lock:
            frames = self._take(steps)
            if steps.due is not None:
                steps.skipped += 1
                steps.due = None
            self.lock.notify_all()  # the queued work is gone
            while steps.running:
                self.lock.wait()
            return frames

    def flush(self, steps: StreamSteps, timeout: float | None) -> bool:
        with self.lock:
            return self.lock.wait_for(
                lambda: self._stopped or steps.closed or (steps.due is None and not steps.running), timeout)

    def close_stream(self, steps: StreamSteps, timeout: float | None) -> bool:
        with self.lock:
            steps.closed = True
            self._take(steps)
            steps.due = None
            return self.lock.wait_for(lambda: not steps.running, timeout)

    def stop(self, timeout: float | None = None) -> bool:
        """End the thread after its in-flight step (queued steps are dropped); waits at most `timeout` s (default
        `join_timeout`). False when the thread is still running."""
        with self.lock:
            self._stopped = True
            self._ready.clear()
            self.lock.notify_all()
        self._thread.join(self.join_timeout if timeout is None else timeout)
        return not self._thread.is_alive()

    def _take(self, steps: StreamSteps) -> list[QueuedFrame]:
        """(lock held) The stream's queued frames, taken off the executor's queue."""
        if steps.queued:
            self._ready.remove(steps)
            steps.queued = False
        frames = list(steps.inbox)
        steps.inbox.clear()
        return frames

    def _run(self) -> None:
        with self._on_side_stream():
            while True:
                with self.lock:
                    self.lock.wait_for(lambda: self._ready or self._stopped)
                    if self._stopped:
                        return
                    steps = self._ready.popleft()
                    steps.queued = False
                    steps.running = True
                    frames, due = self._take(steps), steps.due
                    steps.due = None
                try:
                    self._after_producers(frames)
                    steps.work.run_queued(frames, due)
                except Exception:  # noqa: BLE001 - a failing step never fails a frame: the stream keeps its weights
                    log.exception("TTT step on the step executor failed; the stream keeps its published weights")
                    with self.lock:
                        steps.errors += 1
                finally:
                    with self.lock:
                        steps.running = False
                        if steps.due is not None and not steps.closed and not self._stopped:
                            steps.queued = True
                            self._ready.append(steps)  # behind the streams already waiting: round-robin
                        self.lock.notify_all()

    @contextlib.contextmanager
    def _on_side_stream(self) -> Iterator[None]:
        if self.side_stream is None:
            yield
            return
        with torch.cuda.stream(self.side_stream):
            yield

    def _after_producers(self, frames: list[QueuedFrame]) -> None:
        """On CUDA: the side stream waits for the work that made the frames, which it keeps alive while it uses
        them."""
        if self.side_stream is None:
            return
        self.side_stream.wait_stream(torch.cuda.default_stream(self.device))
        for f in frames:
            f.x.record_stream(self.side_stream)


def _side_stream(device: torch.device) -> "torch.cuda.Stream | None":
    """A low-priority CUDA stream on `device` for the steps, or None (the CPU, or none could be made)."""
    if device.type != "cuda":
        return None
    try:
        return torch.cuda.Stream(device=device, priority=0)  # CUDA's lowest priority (lower numbers run first)
    except Exception:  # noqa: BLE001 - degrade to the current stream
        log.warning("no low-priority CUDA stream for the TTT steps; they share the current stream", exc_info=True)
        return None
