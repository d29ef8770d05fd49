"""The virtual clock of a camera replay: which frames a stream fed at F frames per second can serve on this machine,
when each result is delivered, and when the TTT steps run. Times come from a cost model (`cost_model.py`), never
from a wall clock: nothing sleeps and every replay is deterministic.

Frame i arrives at t_i = i / F. With P the prediction cost of a frame and S the cost of one TTT step:

- `sync`: the frame's steps (n of them, usually 0 or 1), then its prediction: delivered at t_i + n·S + P, the
  worker busy until then;
- `pipelined`: the prediction, delivered at t_i + P, then the frame's steps: busy until t_i + P + n·S;
- `async`: the predictor is busy P per frame (`CameraClock.serve` with no steps); steps run on a second executor
  (`StepExecutor`), so no frame is dropped for a step. A step owed by frame i (from its delivery on) starts when
  the executor is free, the newest owed step replacing any waiting one; the weights it leaves are published at
  its finish time.

A frame that arrives while the worker (the predictor, for `async`) is busy is dropped: the stream never sees it.
`CameraClock.shown` says which delivered result a viewer sees at a given time.

Ties: a frame that arrives exactly when the worker frees is served; a result delivered exactly at a frame's
arrival is shown for it; weights published exactly at a prediction's start are used by it; a step that becomes
owed exactly when the executor frees waits for the step that was already waiting.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable, Generic, Literal, TypeVar

Schedule = Literal["sync", "pipelined", "async"]
SCHEDULES: tuple[Schedule, ...] = ("sync", "pipelined", "async")
T = TypeVar("T")


@dataclass(frozen=True)
class FrameCosts:
    """predict_s: P, seconds to predict, post-process and encode one frame; step_s: S, seconds per TTT step taken."""

    predict_s: float
    step_s: float

    def __post_init__(self) -> None:
        if self.predict_s <= 0 or self.step_s < 0:
            raise ValueError(f"costs must be P > 0 and S >= 0 seconds, got P={self.predict_s}, S={self.step_s}")


class CameraClock:
    """One stream's worker lane at `fps` frames per second: accepts or drops arriving frames and records when each
    served frame's result is delivered (in serving order, so delivery times never decrease)."""

    def __init__(self, fps: float, costs: FrameCosts) -> None:
        if fps <= 0:
            raise ValueError(f"camera fps must be > 0, got {fps}")
        self.fps = fps
        self.costs = costs
        self.busy_until = 0.0
        self.served = 0
        self._deliveries: deque[tuple[float, int]] = deque()  # (time, position) not yet superseded on screen

    def arrival(self, position: int) -> float:
        """t = position / fps: when the frame at `position` of the replay arrives (seconds)."""
        return position / self.fps

    def accepts(self, position: int) -> bool:
        """Whether the worker is free when the frame at `position` arrives (else the frame is dropped)."""
        return self.arrival(position) >= self.busy_until

    def serve(self, position: int, steps_before: int = 0, steps_after: int = 0) -> float:
        """Serve the accepted frame at `position`, whose steps before its prediction (`sync`) and after its delivery
        (`pipelined`) took `steps_before` and `steps_after` steps; returns its delivery time."""
        if not self.accepts(position):
            raise ValueError(f"frame {position} arrives at {self.arrival(position):.6f} s, worker busy until "
                             f"{self.busy_until:.6f} s")
        delivered = self.arrival(position) + steps_before * self.costs.step_s + self.costs.predict_s
        self.busy_until = delivered + steps_after * self.costs.step_s
        self._deliveries.append((delivered, position))
        self.served += 1
        return delivered

    def shown(self, t: float) -> int | None:
        """The position of the frame whose result is the newest delivered at or before `t` (what a viewer sees
        then), or None before the first delivery. Calls must come with non-decreasing `t`."""
        while len(self._deliveries) > 1 and self._deliveries[1][0] <= t:
            self._deliveries.popleft()
        if self._deliveries and self._deliveries[0][0] <= t:
            return self._deliveries[0][1]
        return None


class StepExecutor(Generic[T]):
    """The asynchronous schedule's second executor: one step at a time; when it is free, the newest owed step
    starts. A step owed while another waits replaces it (the replaced one is counted in `skipped`, never run).

    `start(step, time)` runs a step that starts at `time` and returns how many TTT steps it took (its duration is
    that times S, its finish time `free_at`); the caller publishes the weights it leaves at that finish time."""

    def __init__(self, step_s: float) -> None:
        self.step_s = step_s
        self.free_at = 0.0  # the finish time of the last started step
        self.waiting: tuple[T, float] | None = None  # (step, time it became owed)
        self.started = 0
        self.skipped = 0

    def advance(self, t: float, start: Callable[[T, float], int], before: bool = False) -> None:
        """Start the waiting step if the executor reaches it at or before `t` (`before`: strictly before)."""
        if self.waiting is None:
            return
        step, owed_at = self.waiting
        begin = max(self.free_at, owed_at)
        if begin < t or (begin == t and not before):
            self.waiting = None
            taken = start(step, begin)
            self.free_at = begin + taken * self.step_s
            self.started += 1

    def offer(self, step: T, at: float, start: Callable[[T, float], int]) -> None:
        """`step` is owed from time `at` on (its frame's result was delivered then): it waits for the executor,
        replacing any step still waiting."""
        self.advance(at, start)
        if self.waiting is not None:
            self.skipped += 1
        self.waiting = (step, at)
