"""A stream's asynchronous schedule (`TTTConfig.schedule` "async"): its predictions use the weights its steps
last published, its steps run on a `StepExecutor` (ttt/step_executor.py).

Per frame, on the stream's thread: `report` reads the published set once (the weights the frame is predicted
with, ttt/published.py) and writes into the frame's statistics the step published since the previous frame's
record; after the prediction `submit` queues the frame for the window, asks for a step when its step is due, and
writes the steps skipped or failed since the previous frame. On the executor thread `run_queued` puts the frames
into the window, takes the step on the newest and publishes the weights it leaves. `quiesce` (before reset,
`state_dict`, `load_state_dict`) gives the training state back to the stream's thread; `republish` publishes what
that thread made of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from mask2former_ttt.ttt.published import PublishedWeights, snapshot
from mask2former_ttt.ttt.stats import StepStats, Theta0View
from mask2former_ttt.ttt.step_executor import QueuedFrame, StepExecutor
from mask2former_ttt.ttt.stream_forward import StreamForward

if TYPE_CHECKING:
    from mask2former_ttt.ttt.adapter import StreamAdapter

CLOSE_TIMEOUT_S = 10.0  # longest a closing stream waits for its in-flight step


class AsyncSchedule:
    """The asynchronous schedule of `adapter`'s stream on `executor` (`owned`: a private executor, stopped when
    the stream closes)."""

    def __init__(self, adapter: StreamAdapter, executor: StepExecutor, owned: bool = False) -> None:
        self.adapter = adapter
        self.executor = executor
        self.owned = owned
        # the step's forwards run on the executor's replica of the model, never on the one predictions use
        self.forward = StreamForward(executor.model, adapter.names, adapter.cfg.compile, adapter.use_amp)
        self.steps = executor.open(self, adapter.cfg.window)
        self.published = PublishedWeights()  # written by the executor after a step, read once per frame
        self._reported_version = 0  # the stream's thread: the published set whose step was last reported
        self._reported_steps = 0  # the stream's thread: `steps_total` when the previous frame was reported
        self._reported_counts = (0, 0)  # (skipped, failed) steps when the previous frame was reported

    # ---- the stream's thread -------------------------------------------------------------------------------
    def report(self, stats: StepStats) -> PublishedWeights:
        """The set this frame is predicted with (one read of `published`); `stats` gets the step that produced it
        when no earlier frame reported that step (its `steps_taken`: every step taken since the previous frame's
        record), and the stream's rollbacks."""
        published = self.published
        if published.version != self._reported_version and published.step is not None:
            stats.take_step_of(published.step)
            stats.steps_taken = published.steps_total - self._reported_steps
        self._reported_version = published.version
        self._reported_steps = published.steps_total
        stats.rollbacks = published.rollbacks
        return published

    def submit(self, x: torch.Tensor, view: Theta0View, index: int, due: bool, stats: StepStats) -> None:
        """After frame `index`'s prediction: x (3, h, w) uint8 to the window, a step when `due`; `stats` (the
        frame's) gets the steps skipped (this frame's own superseding one included) and failed since the previous
        frame."""
        self.steps.submit(QueuedFrame(x, view, index), due)
        skipped, errors = self.steps.counts()
        stats.steps_skipped = skipped - self._reported_counts[0]
        stats.step_errors = errors - self._reported_counts[1]
        self._reported_counts = (skipped, errors)

    def quiesce(self) -> None:
        """Wait for the in-flight step and drop the queued one; the frames it held go into the window. The
        training state is then the stream's thread's until its next `submit`."""
        self.adapter.window.extend(f.x for f in self.steps.quiesce())

    def republish(self) -> None:
        """After a quiesce, publish what the stream's thread made of the state (a reset, a load); no step is
        reported for it."""
        self.published = snapshot(self.adapter, self.published.version + 1, None, self.published.steps_total)
        self._reported_version = self.published.version
        self._reported_steps = self.published.steps_total

    def close(self) -> bool:
        """No more steps for this stream (bounded wait for an in-flight one). False when one is still running."""
        done = self.steps.close(CLOSE_TIMEOUT_S)
        if self.owned:
            done = self.executor.stop(CLOSE_TIMEOUT_S) and done
        return done

    # ---- the executor thread -------------------------------------------------------------------------------
    def run_queued(self, frames: list[QueuedFrame], due: int | None) -> None:
        """`StepWork.run_queued`: the frames into the window, then one step on the newest when one is due, and the
        weights it leaves published."""
        adapter = self.adapter
        adapter.window.extend(f.x for f in frames)
        if due is None:
            return
        stats = StepStats(frame_index=due)
        adapter.adapt(stats, frames[-1].view if frames else Theta0View())
        previous = self.published
        self.published = snapshot(adapter, previous.version + 1, stats, previous.steps_total + stats.steps_taken)
