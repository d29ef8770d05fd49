"""How far a frame is from the training images as the frozen encoder sees it: the safe-adaptation guard's second
shift detector (issue 12).

The pixel score (ttt/shift_score.py) stays closed on a shift that moves colours gently, yet a model trained on
another domain may already fail on it: on domain B's drift videos the frozen model loses 30-40 mIoU while the
pixel z-score is still below 2 (docs/benchmark/domains.md, session 11). The encoder reacts to exactly what the
model is sensitive to, so this score reads its feature maps instead of the pixels.

For each of the encoder's four maps (strides 4-32) the per-channel spatial mean and standard deviation are taken:
2·C statistics per map and frame. A map's distance from the training images is the root-mean-square z-score
against their per-statistic mean and spread, expressed in units of the training images' own distances:
(d − median) / (q99.5 − median), so 1.0 is as far out as the 0.5 % most atypical training images, whatever the
model's width or the domain's variety, and thresholds carry across checkpoints. The frame's score is the largest
over the four maps: an appearance shift shows in the shallow maps, a shift of content or context in the deep ones.

The score is computed with θ0, the shared model's own weights, not with the stream's adapted ones: adapting would
otherwise pull the features back toward the training statistics and close the gate on the shift it is learning.
It costs one encoder forward per gated frame without gradients.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from model.config import ModelConfig
from model.masking import normalize, with_flag
from model.ymodel import YModel
from mask2former_ttt.ttt.config import TTTConfig
from mask2former_ttt.ttt.gate_reference import gate_in_use, in_tail_units, tail_reference


class FeatureReferenceMissing(ValueError):
    """The checkpoint has no `feature_stats_reference` (re-run `m2f-ttt calibrate`)."""


def feature_gate_in_use(model_cfg: ModelConfig, cfg: TTTConfig) -> tuple[float, float] | None:
    """`cfg.feature_gate` when it can run on this checkpoint, else None. Like the pixel gate without
    `input_stats_reference`, a checkpoint calibrated before the feature gate existed runs without it: a converted or
    older model keeps serving; the warning (once per checkpoint name) says how to turn it on."""
    return gate_in_use(model_cfg, cfg, cfg.feature_gate, "feature_stats_reference", "feature gate")


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


def _distance(stats: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """(B, D) statistics of one map -> (B,) root-mean-square z-score against the training mean / std (D,)."""
    return ((stats - mean) / std).pow(2).mean(1).sqrt()


def feature_reference(model: YModel, frames: Iterable[torch.Tensor]) -> dict[str, list]:
    """Per encoder map s: "mean" / "std" (2·C_s,) of `encoder_statistics` over training images (each (3, h, w)
    uint8 at the working resolution), and "median" / "q_high": the median and 99.5 % quantile of those images'
    own distances from them (one float per map)."""
    per_image = [encoder_statistics(model, f[None]) for f in frames]
    if len(per_image) < 2:
        raise ValueError("need at least 2 training images to estimate the encoder-feature statistics")
    ref: dict[str, list] = {"mean": [], "std": [], "median": [], "q_high": []}
    for s in range(len(per_image[0])):
        stats = torch.cat([p[s] for p in per_image])
        mean, std = stats.mean(0), stats.std(0).clamp_min(1e-6)
        median, q_high = tail_reference(_distance(stats, mean, std))
        ref["mean"].append(mean.tolist())
        ref["std"].append(std.tolist())
        ref["median"].append(median)
        ref["q_high"].append(q_high)
    return ref


def feature_shift_score(model: YModel, frame: torch.Tensor, reference: dict | None) -> float:
    """frame: (3, h, w) uint8 at the working resolution -> its encoder-feature distance from the training images:
    per map, in units of the training images' own tail (0 = the median training image, 1 = the 99.5 % most
    atypical one), and the largest over the maps (module docstring)."""
    if reference is None:
        raise FeatureReferenceMissing(
            "the checkpoint has no feature_stats_reference (calibrated before the feature gate existed): re-run "
            "`m2f-ttt calibrate --model-dir DIR --data-root TRAIN_DATA`, or set feature_gate=None"
        )
    per_map = encoder_statistics(model, frame[None])
    widths = [len(m) for m in reference["mean"]]
    if widths != [p.shape[1] for p in per_map]:
        raise ValueError(
            f"feature_stats_reference has statistics of widths {widths} but this encoder gives "
            f"{[p.shape[1] for p in per_map]}: it was calibrated for another model; re-run `m2f-ttt calibrate`"
        )
    scores = []
    for s, stats in enumerate(per_map):
        mean, std = (torch.tensor(reference[k][s], dtype=stats.dtype, device=stats.device) for k in ("mean", "std"))
        d = float(_distance(stats, mean, std)[0])
        scores.append(in_tail_units(d, reference["median"][s], reference["q_high"][s]))
    return max(scores)
