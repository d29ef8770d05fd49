"""How unsure the frozen model is on a frame, against how unsure it is on its training images: the safe-adaptation
guard's prediction-side shift detector.

Pixel statistics can miss a shift the model fails on: over the first 60 frames of domain B's drift videos the
frozen model's mIoU falls from 69 to 20 while the pixel score (and an encoder-feature score, measured and dropped)
*falls*, because the drifted frames grow more typical of the training images (docs/benchmark/domains.md). The model's own predictions do not miss it: its
per-pixel confidence drops as it starts to fail.

The statistic is the frame's mean per-pixel uncertainty, 1 − max_k p(k), of h∘f's semantic class distribution
(the per-query class and mask probabilities marginalised over queries; (K, h/4, w/4) at the working resolution).
It is expressed in units of the training images' own spread: (u − median) / (q99.5 − median), so 1.0 is as unsure
as the 0.5 % least confident training images, whatever the label set or the model's calibration, and thresholds
carry across checkpoints.

The score uses θ0, the shared model's own weights, never the stream's adapted ones: a learner that grew confident
(or over-confident) would otherwise close, or hold open, the gate on itself. It costs one forward of h∘f without
gradients per gated frame, except where the frame's prediction is θ0's (the stream never stepped, or the guard
serves θ0 while the step is shut): the score then reuses that prediction (ttt/guard.py), and where the gate runs
θ0 before a frame's prediction that θ0 serves, its forward is the prediction.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import torch

from model.config import ModelConfig
from model.main_head import HeadOutput
from model.masking import normalize, with_flag
from model.ymodel import YModel
from mask2former_ttt.ttt.gate_reference import in_tail_units, tail_reference
from mask2former_ttt.ttt.objectives import semantic_probs

log = logging.getLogger(__name__)
_WARNED: set[str] = set()

Gate = tuple[float, float]


class ConfidenceReferenceMissing(ValueError):
    """The checkpoint has no `confidence_reference` (re-run `m2f-ttt calibrate`)."""


def confidence_gate_in_use(model_cfg: ModelConfig, shift_gate: Gate | None, gate: Gate | None) -> Gate | None:
    """`gate` when it can run on this checkpoint, else None. It opens the pixel gate further, so it needs that gate
    (and its `input_stats_reference`); a checkpoint without `confidence_reference` keeps serving without it (one
    warning per checkpoint name, saying how to turn it on)."""
    if gate is None or shift_gate is None or model_cfg.input_stats_reference is None:
        return None
    if model_cfg.confidence_reference is None:
        if model_cfg.name not in _WARNED:
            _WARNED.add(model_cfg.name)
            log.warning("%s: no confidence_reference, so the confidence gate is off; turn it on with `m2f-ttt "
                        "calibrate --model-dir DIR FOOTAGE...` (your own videos or image folders)", model_cfg.name)
        return None
    return gate


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


def confidence_shift_score(uncertainty: float, reference: dict | None) -> float:
    """θ0's uncertainty on a frame (`uncertainty_from_logits`) -> in units of the training images' tail (0 = the
    median training image, 1 = the 0.5 % least confident ones)."""
    if reference is None:
        raise ConfidenceReferenceMissing(
            "the checkpoint has no confidence_reference: run `m2f-ttt calibrate --model-dir DIR FOOTAGE...`, or set "
            "confidence_gate=None"
        )
    return in_tail_units(uncertainty, reference["median"], reference["q_high"])
