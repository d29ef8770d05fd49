"""How far a frame's low-level appearance is from the model's training images: the safe-adaptation guard's
shift detector.

Five statistics per frame — grey-level contrast (std), high-frequency energy (mean |Laplacian|) and the mean of
each RGB channel — are compared with their mean and spread over the training images (stored in the checkpoint's
config as `input_stats_reference`). The shift score is the largest absolute z-score. Noise and JPEG raise the
high-frequency energy, blur lowers it, fog and contrast loss change contrast and brightness, appearance drift
moves the colour means; a frame that looks like the training data scores near 0-2.

Two scores (`TTTConfig.shift_score`):

* ``"z"``: the largest |z-score| against the training mean and standard deviation — in units that depend on the
  training set's spread and shape (4 % of the street stills already score above 2.5);
* ``"quantile"``: for each statistic, the distance from the training median in units of the training set's own
  tail on that side — (x − median) / (q99.5 − median) above the median, (median − x) / (median − q0.5) below —
  and the largest over the statistics. 1.0 = as far out as the 0.5 % most extreme training images in that
  direction, whatever the domain's spread, skew or multi-modality, so thresholds carry across datasets.

The self-supervised loss ℓ_s cannot play this role: at θ0 it is 1.1-1.4× its training level on clean validation
videos but 0.1-1.0× on contrast and fog, whose gains a loss gate would throw away (docs/benchmark/findings.md).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from mask2former_ttt.ttt.config import TTTConfig

STAT_NAMES = ("grey_std", "laplacian", "mean_r", "mean_g", "mean_b")


def frame_statistics(frame: torch.Tensor) -> torch.Tensor:
    """frame: (3, H, W) uint8 or float in [0, 1] -> (5,) float32 statistics in `STAT_NAMES` order."""
    x = frame.float() / 255.0 if frame.dtype == torch.uint8 else frame.float()
    grey = x.mean(0)
    lap = (4 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1] - grey[1:-1, :-2] - grey[1:-1, 2:]).abs().mean()
    return torch.stack([grey.std(), lap, *x.mean((1, 2))])


TAIL = 0.005  # the quantile score's unit: the training set's 0.5 % / 99.5 % quantiles
SHIFT_SCORES = ("z", "quantile")


def reference_statistics(frames: Iterable[torch.Tensor]) -> dict[str, list[float]]:
    """{"mean", "std", "median", "q_low", "q_high"}: each (5,), of `frame_statistics` over training images (q_low /
    q_high = the `TAIL` and 1 − `TAIL` quantiles), for the checkpoint config."""
    stats = torch.stack([frame_statistics(f) for f in frames]).double()
    if stats.shape[0] < 2:
        raise ValueError("need at least 2 training images to estimate the input statistics")
    q = torch.quantile(stats, torch.tensor([TAIL, 0.5, 1.0 - TAIL], dtype=stats.dtype), dim=0)
    return {"mean": stats.mean(0).tolist(), "std": stats.std(0).clamp_min(1e-6).tolist(),
            "median": q[1].tolist(), "q_low": q[0].tolist(), "q_high": q[2].tolist()}


_TOO_OLD = ("the checkpoint's input_stats_reference has no quantiles (calibrated before they existed): re-run "
            "`m2f-ttt calibrate --model-dir DIR --data-root TRAIN_DATA`, or use shift_score='z'")


class ReferenceTooOld(ValueError):
    """The checkpoint's `input_stats_reference` predates the quantile score (re-run `m2f-ttt calibrate`)."""


def check_reference(reference: dict[str, list[float]] | None, cfg: TTTConfig) -> None:
    """Raise `ReferenceTooOld` when `cfg` gates on the quantile score and `reference` lacks quantiles: said once
    when a stream starts, not on every frame."""
    if reference is not None and cfg.shift_gate is not None and cfg.shift_score == "quantile" and "median" not in reference:
        raise ReferenceTooOld(_TOO_OLD)


def shift_score(frame: torch.Tensor, reference: dict[str, list[float]], kind: str = "z") -> float:
    """frame: (3, H, W) -> how atypical its statistics are against `reference` (0 = exactly typical); `kind` is
    "z" (largest |z-score|) or "quantile" (largest distance in units of the training tail, module docstring)."""
    x = frame_statistics(frame.cpu()).double()
    if kind == "z":
        z = (x - torch.tensor(reference["mean"], dtype=x.dtype)) / torch.tensor(reference["std"], dtype=x.dtype)
        return float(z.abs().max())
    if kind != "quantile":
        raise ValueError(f"unknown shift score {kind!r}; choose one of {SHIFT_SCORES}")
    if "median" not in reference:
        raise ReferenceTooOld(_TOO_OLD)
    med, lo, hi = (torch.tensor(reference[k], dtype=x.dtype) for k in ("median", "q_low", "q_high"))
    above = (x - med) / (hi - med).clamp_min(1e-9)
    below = (med - x) / (med - lo).clamp_min(1e-9)
    return float(torch.where(x > med, above, below).max())


def gate_scale(score: float, low: float, high: float) -> float:
    """Step-size multiplier: 0 up to `low`, rising linearly to 1 at `high`."""
    if score <= low:
        return 0.0
    return 1.0 if score >= high else (score - low) / (high - low)
