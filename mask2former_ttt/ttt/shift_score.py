"""How far a frame's low-level appearance is from the model's training images: the safe-adaptation guard's pixel
shift detector.

Five statistics per frame — grey-level contrast (std), high-frequency energy (mean |Laplacian|) and the mean of
each RGB channel — are compared with their mean and spread over the training images (stored in the checkpoint's
config as `input_stats_reference`). The shift score is the largest absolute z-score. Noise and JPEG raise the
high-frequency energy, blur lowers it, fog and contrast loss change contrast and brightness, appearance drift
moves the colour means; a frame that looks like the training data scores near 0-2.

The self-supervised loss ℓ_s cannot play this role: at θ0 it is 1.1-1.4× its training level on clean validation
videos but 0.1-1.0× on contrast and fog, whose gains a loss gate would throw away (docs/benchmark/guard.md).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

STAT_NAMES = ("grey_std", "laplacian", "mean_r", "mean_g", "mean_b")


def frame_statistics(frame: torch.Tensor) -> torch.Tensor:
    """frame: (3, H, W) uint8 or float in [0, 1] -> (5,) float32 statistics in `STAT_NAMES` order."""
    x = frame.float() / 255.0 if frame.dtype == torch.uint8 else frame.float()
    grey = x.mean(0)
    lap = (4 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1] - grey[1:-1, :-2] - grey[1:-1, 2:]).abs().mean()
    return torch.stack([grey.std(), lap, *x.mean((1, 2))])


def reference_statistics(frames: Iterable[torch.Tensor]) -> dict[str, list[float]]:
    """{"mean", "std"}: each (5,), of `frame_statistics` over training images, for the checkpoint config."""
    stats = torch.stack([frame_statistics(f) for f in frames]).double()
    if stats.shape[0] < 2:
        raise ValueError("need at least 2 training images to estimate the input statistics")
    return {"mean": stats.mean(0).tolist(), "std": stats.std(0).clamp_min(1e-6).tolist()}


def shift_score(frame: torch.Tensor, reference: dict[str, list[float]]) -> float:
    """frame: (3, H, W) -> the largest |z-score| of its statistics against `reference` (0 = exactly typical)."""
    x = frame_statistics(frame.cpu()).double()
    z = (x - torch.tensor(reference["mean"], dtype=x.dtype)) / torch.tensor(reference["std"], dtype=x.dtype)
    return float(z.abs().max())


def gate_scale(score: float, low: float, high: float) -> float:
    """Step-size multiplier: 0 up to `low`, rising linearly to 1 at `high`."""
    if score <= low:
        return 0.0
    return 1.0 if score >= high else (score - low) / (high - low)
