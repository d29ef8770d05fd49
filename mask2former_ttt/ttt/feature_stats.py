"""f's feature statistics: the per-channel spatial mean and standard deviation of each of the encoder's four maps
(strides 4-32), 2·C statistics per map. Calibration (`m2f-ttt calibrate`, joint training) stores their mean and
spread over the training images in the checkpoint (`feature_stats_reference`); the feature-alignment term
(ttt/feature_align.py) keeps an adapting encoder's statistics near them."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from model.masking import normalize, with_flag
from model.ymodel import YModel


def map_statistics(m: torch.Tensor) -> torch.Tensor:
    """One encoder map (B, C, h, w) -> (B, 2·C) float32: the per-channel spatial mean, then the per-channel spatial
    standard deviation (differentiable: ttt/feature_align.py trains on them)."""
    m = m.float()
    return torch.cat([m.mean((2, 3)), m.std((2, 3))], dim=1)


@torch.no_grad()
def encoder_statistics(model: YModel, frames: torch.Tensor) -> list[torch.Tensor]:
    """frames: (B, 3, h, w) uint8 at the working resolution -> one (B, 2·C_s) float64 per map of the θ0 encoder
    (strides 4, 8, 16, 32): `map_statistics`."""
    maps = model.encode(with_flag(normalize(frames, model.cfg)))
    return [map_statistics(m).double() for m in maps]


def feature_reference(model: YModel, frames: Iterable[torch.Tensor]) -> dict[str, list]:
    """Per encoder map s: "mean" / "std" (2·C_s,) of `encoder_statistics` over training images (each (3, h, w)
    uint8 at the working resolution)."""
    per_image = [encoder_statistics(model, f[None]) for f in frames]
    if len(per_image) < 2:
        raise ValueError("need at least 2 training images to estimate the encoder-feature statistics")
    ref: dict[str, list] = {"mean": [], "std": []}
    for s in range(len(per_image[0])):
        stats = torch.cat([p[s] for p in per_image])
        ref["mean"].append(stats.mean(0).tolist())
        ref["std"].append(stats.std(0).clamp_min(1e-6).tolist())
    return ref
