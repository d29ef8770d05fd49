"""What one `step` returns: the frame's prediction logits and the step's statistics."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from mask2former_ttt.ttt.published import PublishedWeights


STEP_RECORD_FIELDS = (  # what a TTT step records
    "loss", "sample_s", "ttt_forward_s", "ttt_backward_s", "optimizer_s", "steps_taken", "rolled_back", "shift_score",
    "confidence_score", "step_scale",
)


@dataclass
class StepStats:
    """Per-frame figures: ℓ_s (None when the method takes no step) and the time split in seconds."""

    frame_index: int
    loss: float | None = None
    sample_s: float = 0.0  # drawing and cropping the step's samples from the window
    ttt_forward_s: float = 0.0
    ttt_backward_s: float = 0.0
    optimizer_s: float = 0.0
    predict_s: float = 0.0
    postprocess_s: float = 0.0  # filled by whoever post-processes (runner, service)
    steps_taken: int = 0
    rolled_back: bool = False
    rollbacks: int = 0
    reset: bool = False
    shift_score: float | None = None  # the frame's distance from the training images (safe-adaptation guard)
    confidence_score: float | None = None  # θ0's prediction uncertainty on the frame vs training (confidence gate)
    step_scale: float = 1.0  # the guard's step-size multiplier for this frame (0 = step skipped)
    steps_skipped: int = 0  # asynchronous schedule: the stream's steps skipped (fallen behind) since the last frame
    step_errors: int = 0  # asynchronous schedule: the stream's steps that raised since the last frame

    def as_dict(self) -> dict:
        return asdict(self)

    def take_step_of(self, other: "StepStats") -> None:
        """Report the step `other` recorded (a pipelined frame's, taken after its result was sent) as this frame's."""
        for name in STEP_RECORD_FIELDS:
            setattr(self, name, getattr(other, name))


@dataclass
class Theta0View:
    """θ0's view of one frame, made at most once and shared by the frame's prediction and its confidence gate
    (ttt/guard.py)."""

    logits: tuple[torch.Tensor, torch.Tensor] | None = None  # the gate's θ0 forward, not yet served as the prediction
    uncertainty: float | None = None  # θ0's prediction uncertainty on the frame (ttt/confidence_shift.py)
    predicted: bool = False  # the frame's prediction has been made


@dataclass
class StepResult:
    """class_logits: (Q, K+1); mask_logits: (Q, h/4, w/4) at the working resolution (h, w)."""

    class_logits: torch.Tensor
    mask_logits: torch.Tensor
    stats: StepStats
    working_size: tuple[int, int]


@dataclass
class FrameWork:
    """One frame on its way through `step`: x (3, h, w) uint8 at the working resolution (in the window), its
    stats, whether its step is due before its prediction, and θ0's view of it (`Theta0View`, shared by the
    confidence gate and the prediction: ttt/guard.py) and, with the asynchronous schedule, the published weights it is
    predicted with."""

    x: torch.Tensor
    stats: StepStats
    due: bool
    view: Theta0View = field(default_factory=Theta0View)
    weights: PublishedWeights | None = None  # asynchronous schedule: the set it is predicted with (ttt/published.py)
