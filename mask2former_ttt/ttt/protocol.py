"""The interface every adaptation method offers, so callers (the service, `segment`, `evaluate`, jobs) treat all
methods alike and ask capabilities instead of probing attributes."""

from __future__ import annotations

from typing import Any, Iterable, Protocol, runtime_checkable

import torch

from model.ymodel import YModel
from mask2former_ttt.ttt.stats import StepResult


@runtime_checkable
class Adapter(Protocol):
    """One stream's adaptation state over a shared `YModel`.

    Capabilities:
    - `needs_whole_video`: the method trains on every frame before its first prediction (`prepare(frames)` must
      be called with the whole video first); such a method cannot serve a live stream.
    """

    method: str
    model: YModel
    needs_whole_video: bool
    rollbacks: int
    timing_sync: bool  # synchronize the device after each timed stage (profiling; costs overlap on CUDA)

    def step(self, frame: torch.Tensor) -> StepResult:
        """frame: (3, H, W) uint8 RGB -> the prediction on this frame after adapting to it."""
        ...

    def predict(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (3, h, w) uint8 at the working resolution -> class logits (Q, K+1), mask logits (Q, h/4, w/4) with the
        weights the stream predicts with now; the stream's state is not changed."""
        ...

    def finish_pending(self) -> None:
        """Take a step that a pipelined `step` deferred; a no-op when none is pending (and for other configs). With
        the asynchronous schedule: wait until the stream's queued step has been taken on its step executor."""
        ...

    def prepare(self, frames: Iterable[torch.Tensor]) -> None:
        """Whole-video training for methods with `needs_whole_video`; a no-op for online methods."""
        ...

    def reset(self) -> None:
        """Back to θ0 with an empty window and fresh optimizer state."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this stream exactly."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state saved by `state_dict` of the same method (ValueError otherwise)."""
        ...

    def memory_bytes(self) -> int:
        """Bytes held by this stream's own tensors right now."""
        ...

    def estimated_memory_bytes(self, frame_hw: tuple[int, int] | None = None) -> int:
        """Steady-state bytes per stream, known before the first frame (admission control)."""
        ...
