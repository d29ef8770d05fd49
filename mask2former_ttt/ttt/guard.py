"""The safe-adaptation guard: every decision that keeps a stream's adaptation from hurting it.

Per frame it decides
- the step scale (`step_scale`): 0 on a frame that looks like the training images, rising to 1 on a shifted one,
  from the pixel shift score (ttt/shift_score.py) and, where that is not fully open, θ0's prediction uncertainty
  (ttt/confidence_shift.py);
- what a shut frame does to the weights (`on_shut`): relax toward θ0, and once the stream has been shut for
  `RETURN_FRAMES` frames in a row (a return to the training domain) drop the optimizer state, relax faster, and
  `RETURN_SNAP_FRAMES` frames later set the weights to θ0 exactly;
- which weights predict the frame (`predictor`): θ0 while shut or before the first update, else the moving average
  of the weights (`predict_ema`) or the latest weights.

The adapter owns the tensors and calls the guard at these points; the guard's only state is the count of shut
frames in a row. `GuardConfig` (ttt/config.py) holds its settings; `TTTConfig.guard = None` runs unguarded (every
frame steps in full, no relaxation, predictions from the latest weights), as the paper's rows do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch

from model.config import ModelConfig
from mask2former_ttt.ttt.confidence_shift import (
    confidence_gate_in_use, confidence_shift_score, uncertainty_from_logits,
)
from mask2former_ttt.ttt.config import GuardConfig
from mask2former_ttt.ttt.shift_score import gate_scale, shift_score
from mask2former_ttt.ttt.stats import StepStats, Theta0View

RETURN_FRAMES = 5  # shut frames in a row that count as a return to the training domain
RETURN_ANCHOR = 0.2  # per-frame relaxation toward θ0 once a return is detected
# further shut frames until the weights are set to θ0 exactly: the relaxation has left < 1e-4 of the adaptation in
# the weights by then (0.8^50), and 0.5 % in a 0.9 moving average
RETURN_SNAP_FRAMES = 50

Predictor = Literal["theta0", "average", "latest"]
Theta0Forward = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class ShutFrame:
    """What a frame with the step shut does to the stream's weights."""

    relax: float  # fraction of the way back to θ0
    drop_optimizer: bool  # a return was detected on this frame: no momentum from the shift carried on
    snap: bool  # back on the training domain long enough: the weights (and their average) become θ0 exactly


class Guard:
    """One stream's safe-adaptation decisions (module docstring). `cfg` None: unguarded."""

    def __init__(self, cfg: GuardConfig | None, model_cfg: ModelConfig) -> None:
        self.cfg = cfg
        self.model_cfg = model_cfg
        # without the checkpoint's input statistics the gates cannot run: every frame steps in full
        self.gated = cfg is not None and model_cfg.input_stats_reference is not None
        self.confidence_gate = confidence_gate_in_use(model_cfg, cfg.shift_gate, cfg.confidence_gate) if cfg else None
        self.shut_frames = 0  # consecutive frames with the step shut (return detection)

    @property
    def anchor(self) -> float:
        """The pull toward θ0 after each update."""
        return self.cfg.anchor if self.cfg is not None else 0.0

    @property
    def average_rate(self) -> float:
        """`predict_ema`: the moving average's decay (0 = no average)."""
        return self.cfg.predict_ema if self.cfg is not None else 0.0

    @property
    def shut(self) -> bool:
        """Whether the latest decision shut the step."""
        return self.shut_frames > 0

    def step_scale(self, frame: torch.Tensor, view: Theta0View, stats: StepStats, theta0: Theta0Forward) -> float:
        """This frame's step-size multiplier (frame: (3, h, w) uint8, the window's newest), also written to
        `stats`: the pixel gate's, or the larger of it and the confidence gate's when the pixel gate is not fully
        open. The confidence score takes θ0's uncertainty from `view` (θ0's prediction of the frame, made before)
        or runs `theta0` once and keeps its logits in `view` for the frame's prediction when that is still to
        come. Counts shut frames in a row."""
        scale = 1.0
        if self.gated:
            assert self.cfg is not None
            stats.shift_score = shift_score(frame, self.model_cfg.input_stats_reference)
            scale = gate_scale(stats.shift_score, *self.cfg.shift_gate)
            if self.confidence_gate is not None and scale < 1.0:
                stats.confidence_score = self._confidence_score(frame, view, theta0)
                scale = max(scale, gate_scale(stats.confidence_score, *self.confidence_gate))
        stats.step_scale = scale
        self.shut_frames = self.shut_frames + 1 if scale == 0.0 else 0
        return scale

    def _confidence_score(self, frame: torch.Tensor, view: Theta0View, theta0: Theta0Forward) -> float:
        if view.uncertainty is None:
            class_logits, mask_logits = theta0(frame)
            if not view.predicted:  # the frame's prediction is still to come: it may be this forward
                view.logits = (class_logits, mask_logits)
            view.uncertainty = float(uncertainty_from_logits(class_logits[None], mask_logits[None])[0])
        return confidence_shift_score(view.uncertainty, self.model_cfg.confidence_reference)

    def on_shut(self, stepped: bool) -> ShutFrame:
        """What the frame just found shut does (`stepped`: whether the weights are off θ0)."""
        returned = self.shut_frames >= RETURN_FRAMES
        return ShutFrame(
            relax=RETURN_ANCHOR if returned else self.anchor,
            drop_optimizer=self.shut_frames == RETURN_FRAMES,
            snap=stepped and self.shut_frames == RETURN_FRAMES + RETURN_SNAP_FRAMES,
        )

    def predictor(self, stepped: bool, has_average: bool) -> Predictor:
        """Which weights predict the next frame: θ0 before the first update and while the step is shut (a frame
        the guard finds typical of the training images is served by the model trained on them), else the moving
        average when there is one, else the latest weights."""
        if not stepped or (self.gated and self.shut):
            return "theta0"
        return "average" if has_average else "latest"

    def remember(self, view: Theta0View, class_logits: torch.Tensor, mask_logits: torch.Tensor, theta0: bool) -> None:
        """After the frame of `view` was predicted (logits (Q, K+1), (Q, h/4, w/4); `theta0`: with θ0): a θ0
        prediction's uncertainty is kept for the confidence gate, which then needs no forward of its own."""
        view.predicted = True
        if theta0 and self.confidence_gate is not None:
            view.uncertainty = float(uncertainty_from_logits(class_logits[None], mask_logits[None])[0])
