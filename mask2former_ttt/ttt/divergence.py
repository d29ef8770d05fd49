"""When a TTT step diverges: a non-finite loss, or (after a warm-up) a loss far above its running level. The
adapter then rolls the stream back to θ0 (`StreamAdapter.rollback`)."""

from __future__ import annotations

import math

WARMUP_FRAMES = 5  # frames before a loss far above its running level counts as a divergence
EXPLODE_FACTOR = 10.0  # a loss above this × its running mean rolls the stream back to θ0


class Divergence:
    """One stream's running loss level (`level`: an exponential mean, None until the first accepted step)."""

    def __init__(self, level: float | None = None) -> None:
        self.level = level

    def diverged(self, loss: float, frame_index: int) -> bool:
        """Whether a step with this loss on frame `frame_index` diverged."""
        if not math.isfinite(loss):
            return True
        warm = self.level is not None and frame_index >= WARMUP_FRAMES
        return warm and loss > EXPLODE_FACTOR * self.level

    def observe(self, loss: float) -> None:
        """An accepted step's loss joins the running level."""
        self.level = loss if self.level is None else 0.9 * self.level + 0.1 * loss
