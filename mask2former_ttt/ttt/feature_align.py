"""Feature alignment beside the self-supervised loss (TTT++, Liu et al. 2021): keep the adapting encoder's feature
statistics near the training images' (issue 12, session 15).

The MAE step moves f wherever reconstruction needs it; h, which is not adapted, reads f's maps as they were on the
training images. On a shift the reconstruction learns quickly (domain B's haze: ℓ_s falls from 7× to 0.8× the
clean reference within a few frames) the features can move where h no longer reads them. This term pulls the
per-channel spatial mean and standard deviation of each of f's four maps, on the unmasked frame, back toward the
training images' (the feature gate's `feature_stats_reference`, ttt/feature_shift.py): the mean squared z-score
over the 2·C statistics of a map, averaged over the maps. On a typical training image it is ≈ 1.

It costs one more forward and backward of f (without g) per sample. The stream adds it to its objective with
`TTTConfig.feature_align` as the weight; a checkpoint without the reference runs without it (warned once). The
service's batched path computes the same sum for MAE streams (ttt/cross_stream.py).
"""

from __future__ import annotations

import logging
from typing import Callable

import torch

from model.config import ModelConfig
from model.masking import with_flag
from mask2former_ttt.ttt.config import TTTConfig
from mask2former_ttt.ttt.feature_shift import map_statistics

log = logging.getLogger(__name__)
_WARNED: set[str] = set()

Objective = Callable[..., torch.Tensor]


class FeatureTargets:
    """The training images' per-map statistics (`feature_stats_reference`: "mean" / "std", (2·C_s,) per map) as
    tensors, made once and kept per device, so a step costs no conversion or host-to-device copy."""

    def __init__(self, reference: dict[str, list]) -> None:
        self._by_device = {torch.device("cpu"): [
            (torch.tensor(m, dtype=torch.float32), torch.tensor(s, dtype=torch.float32))
            for m, s in zip(reference["mean"], reference["std"])
        ]}

    def on(self, device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per map, (mean, std) (2·C_s,) float32 on `device`."""
        if device not in self._by_device:
            self._by_device[device] = [(m.to(device), s.to(device)) for m, s in self._by_device[torch.device("cpu")]]
        return self._by_device[device]

    def loss(self, maps: list[torch.Tensor]) -> torch.Tensor:
        """maps: f's four maps (B, C_s, h_s, w_s) -> () the mean over maps and samples of the mean squared z-score
        of `map_statistics` against the training images' mean and std."""
        targets = self.on(maps[0].device)
        per_map = [((map_statistics(m) - mean) / std).pow(2).mean() for m, (mean, std) in zip(maps, targets)]
        return torch.stack(per_map).mean()


def alignment_in_use(model_cfg: ModelConfig, cfg: TTTConfig) -> dict[str, list] | None:
    """The reference to align to when `cfg.feature_align` is on and the checkpoint has one, else None (warned once
    per checkpoint name: `m2f-ttt calibrate` writes it)."""
    if cfg.feature_align <= 0.0:
        return None
    reference = model_cfg.feature_stats_reference
    if reference is None and model_cfg.name not in _WARNED:
        _WARNED.add(model_cfg.name)
        log.warning("%s: no feature_stats_reference, so feature_align is off; turn it on with `m2f-ttt calibrate "
                    "--model-dir DIR --data-root TRAIN_DATA`", model_cfg.name)
    return reference


def with_alignment(objective: Objective, reference: dict[str, list], weight: float) -> Objective:
    """`objective` + `weight` × `FeatureTargets.loss` of f's maps of the unmasked samples. Padding (`valid` = 0,
    from the release's COCO augmentation; the project's presets use whole frames) is fed as masked, as the objective
    does, and counts in the maps' statistics."""

    targets = FeatureTargets(reference)

    def aligned(forward, x: torch.Tensor, cfg: TTTConfig, generator: torch.Generator, **kw) -> torch.Tensor:
        loss = objective(forward, x, cfg, generator, **kw)
        maps = forward(with_flag(x, kw.get("valid")), "encode")
        return loss + weight * targets.loss(maps)

    aligned.base, aligned.targets, aligned.weight = objective, targets, weight  # type: ignore[attr-defined]
    return aligned


def alignment_of(objective: Objective) -> tuple[Objective, FeatureTargets | None, float]:
    """(the objective under any alignment, the targets it aligns to or None, its weight): how the batched path
    (ttt/cross_stream.py) reads a stream's objective."""
    return (getattr(objective, "base", objective), getattr(objective, "targets", None),
            getattr(objective, "weight", 0.0))
