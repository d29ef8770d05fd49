"""f's feature statistics: the per-channel spatial mean and standard deviation of each of the encoder's four maps
(strides 4-32), 2·C statistics per map, on inputs masked as a TTT-MAE step masks them. Calibration (`m2f-ttt
calibrate`, `prepare`, joint training) stores their mean and spread over the training images in the checkpoint
(`feature_stats_reference`, with the mask ratio it was drawn at); the feature-alignment term (ttt/feature_align.py)
keeps an adapting encoder's statistics, taken from the step's own masked forward, near them."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from model.masking import normalize, random_patch_mask, with_flag
from model.ymodel import YModel
from mask2former_ttt.ttt.config import MASK_PATCH, TTTConfig

REFERENCE_MASK_RATIO: float = TTTConfig.model_fields["mask_ratio"].default  # every preset's ratio
REFERENCE_SEED = 1234  # the patch masks of the reference are drawn from this seed: calibration is repeatable


def map_statistics(m: torch.Tensor) -> torch.Tensor:
    """One encoder map (B, C, h, w) -> (B, 2·C) float32: the per-channel spatial mean, then the per-channel spatial
    standard deviation (differentiable: ttt/feature_align.py trains on them)."""
    m = m.float()
    return torch.cat([m.mean((2, 3)), m.std((2, 3))], dim=1)


@torch.no_grad()
def encoder_statistics(model: YModel, frames: torch.Tensor, visible: torch.Tensor) -> list[torch.Tensor]:
    """frames: (B, 3, h, w) uint8 at the working resolution, visible: (B, 1, h, w) patch mask (1 = shown) -> one
    (B, 2·C_s) float64 per map of the θ0 encoder on the masked frames (strides 4, 8, 16, 32): `map_statistics`."""
    maps = model.encode(with_flag(normalize(frames, model.cfg), visible.to(frames.device)))
    return [map_statistics(m).double() for m in maps]


def feature_reference(
    model: YModel, frames: Iterable[torch.Tensor], mask_ratio: float = REFERENCE_MASK_RATIO, patch: int = MASK_PATCH,
) -> dict[str, list]:
    """Per encoder map s: "mean" / "std" (2·C_s,) of `encoder_statistics` over training images (each (3, h, w)
    uint8 at the working resolution), each masked once as a TTT step masks a sample (`mask_ratio` of its
    `patch`-pixel cells hidden, drawn from `REFERENCE_SEED`); "mask_ratio" records the ratio."""
    generator = torch.Generator().manual_seed(REFERENCE_SEED)
    per_image = [
        encoder_statistics(model, f[None], random_patch_mask(1, f.shape[-2], f.shape[-1], patch, mask_ratio, generator))
        for f in frames
    ]
    if len(per_image) < 2:
        raise ValueError("need at least 2 training images to estimate the encoder-feature statistics")
    ref: dict[str, list] = {"mean": [], "std": [], "mask_ratio": mask_ratio}
    for s in range(len(per_image[0])):
        stats = torch.cat([p[s] for p in per_image])
        ref["mean"].append(stats.mean(0).tolist())
        ref["std"].append(stats.std(0).clamp_min(1e-6).tolist())
    return ref
