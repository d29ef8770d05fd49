"""How unsure the frozen model is on a frame, against how unsure it is on its training images: the safe-adaptation
guard's prediction-side shift detector (issue 12, session 12).

Pixel and encoder-feature statistics can miss a shift the model fails on: over the first 60 frames of domain B's
drift videos the frozen model's mIoU falls from 69 to 20 while both scores *fall*, because the drifted frames grow
more typical of the training images (docs/benchmark/domains.md, session 11). The model's own predictions do not
miss it: its per-pixel confidence drops as it starts to fail.

The statistic is the frame's mean per-pixel uncertainty, 1 − max_k p(k), of h∘f's semantic class distribution
(the per-query class and mask probabilities marginalised over queries; (K, h/4, w/4) at the working resolution).
It is expressed in units of the training images' own spread: (u − median) / (q99.5 − median), so 1.0 is as unsure
as the 0.5 % least confident training images, whatever the label set or the model's calibration, and thresholds
carry across checkpoints.

The score uses θ0, the shared model's own weights, never the stream's adapted ones: a learner that grew confident
(or over-confident) would otherwise close, or hold open, the gate on itself. It costs one forward of h∘f without
gradients per gated frame, except while the stream has never stepped: its predictions are then θ0's, and the
score reuses the frame's own prediction (a clean stream pays nothing for the gate).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from model.config import ModelConfig
from model.main_head import HeadOutput
from model.masking import normalize, with_flag
from model.ymodel import YModel
from mask2former_ttt.ttt.config import TTTConfig
from mask2former_ttt.ttt.gate_reference import gate_in_use, in_tail_units, tail_reference
from mask2former_ttt.ttt.objectives import semantic_probs


class ConfidenceReferenceMissing(ValueError):
    """The checkpoint has no `confidence_reference` (re-run `m2f-ttt calibrate`)."""


def confidence_gate_in_use(model_cfg: ModelConfig, cfg: TTTConfig) -> tuple[float, float] | None:
    """`cfg.confidence_gate` when it can run on this checkpoint, else None: like the feature gate, it needs the pixel
    gate on, and a checkpoint calibrated before it existed keeps serving without it (one warning per checkpoint)."""
    return gate_in_use(model_cfg, cfg, cfg.confidence_gate, "confidence_reference", "confidence gate")


def uncertainty_from_logits(class_logits: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
    """class_logits (B, Q, K+1), mask_logits (B, Q, h, w) of h -> (B,) float64: the mean over pixels of
    1 − max_k p(k) under the semantic class distribution they give (0 = certain everywhere)."""
    probs = semantic_probs(HeadOutput(class_logits=class_logits, mask_logits=mask_logits, aux=[]))  # (B, K, h, w)
    return (1.0 - probs.max(1).values).mean((1, 2)).double()


@torch.no_grad()
def prediction_uncertainty(model: YModel, frames: torch.Tensor) -> torch.Tensor:
    """frames: (B, 3, h, w) uint8 at the working resolution -> (B,) float64 `uncertainty_from_logits` of the θ0
    model's prediction."""
    out = model(with_flag(normalize(frames, model.cfg)), mode="predict")
    return uncertainty_from_logits(out.class_logits, out.mask_logits)


def confidence_reference(model: YModel, frames: Iterable[torch.Tensor]) -> dict[str, float]:
    """"median" and "q_high" (the 99.5 % quantile) of `prediction_uncertainty` over training images, each
    (3, h, w) uint8 at the working resolution."""
    values = torch.cat([prediction_uncertainty(model, f[None]) for f in frames])
    if len(values) < 2:
        raise ValueError("need at least 2 training images to estimate the prediction-confidence reference")
    median, q_high = tail_reference(values)
    return {"median": median, "q_high": q_high}


def confidence_shift_score(
    model: YModel, frame: torch.Tensor, reference: dict | None, uncertainty: float | None = None
) -> float:
    """frame: (3, h, w) uint8 at the working resolution -> θ0's uncertainty on it in units of the training images'
    tail (0 = the median training image, 1 = the 0.5 % least confident ones). `uncertainty`: θ0's, when the caller
    already has it from a prediction made with θ0 (the forward is then skipped)."""
    if reference is None:
        raise ConfidenceReferenceMissing(
            "the checkpoint has no confidence_reference (calibrated before the confidence gate existed): re-run "
            "`m2f-ttt calibrate --model-dir DIR --data-root TRAIN_DATA`, or set confidence_gate=None"
        )
    u = float(prediction_uncertainty(model, frame[None])[0]) if uncertainty is None else uncertainty
    return in_tail_units(u, reference["median"], reference["q_high"])
