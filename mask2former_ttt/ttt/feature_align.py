"""Feature alignment beside the self-supervised loss (TTT++, Liu et al. 2021): keep the adapting encoder's feature
statistics near the training images'.

The MAE step moves f wherever reconstruction needs it; h, which is not adapted, reads f's maps as they were on the
training images. On a shift the reconstruction learns quickly (domain B's haze: ℓ_s falls from 7× to 0.8× the
clean reference within a few frames) the features can move where h no longer reads them. This term pulls the
per-channel spatial mean and standard deviation of each of f's four maps, on the unmasked frame, back toward the
training images' (`feature_stats_reference`, ttt/feature_stats.py): the mean squared z-score over the 2·C
statistics of a map, averaged over the maps. On a typical training image it is ≈ 1.

It costs one more forward and backward of f (without g) per sample. `GuardConfig.feature_align` is its weight;
a checkpoint without the reference runs without it (warned once). TTT-MAE's objective (ttt/objectives.py) adds it.
"""

from __future__ import annotations

import logging

import torch

from model.config import ModelConfig
from mask2former_ttt.ttt.config import TTTConfig
from mask2former_ttt.ttt.feature_stats import map_statistics

log = logging.getLogger(__name__)
_WARNED: set[str] = set()


class FeatureAlignment:
    """The term `weight` × mean squared z-score of f's map statistics against the training images' reference
    ("mean" / "std", (2·C_s,) per map), its targets made into tensors once and kept per device."""

    def __init__(self, reference: dict[str, list], weight: float) -> None:
        self.weight = weight
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
        """maps: f's four maps (B, C_s, h_s, w_s) -> () `weight` × the mean over maps and samples of the mean
        squared z-score of `map_statistics` against the training images' mean and std."""
        targets = self.on(maps[0].device)
        per_map = [((map_statistics(m) - mean) / std).pow(2).mean() for m, (mean, std) in zip(maps, targets)]
        return self.weight * torch.stack(per_map).mean()


def alignment_in_use(model_cfg: ModelConfig, cfg: TTTConfig) -> FeatureAlignment | None:
    """The alignment term when the guard's `feature_align` is on and the checkpoint has the reference, else None
    (warned once per checkpoint name: `m2f-ttt calibrate` writes it)."""
    if cfg.guard is None or cfg.guard.feature_align <= 0.0:
        return None
    reference = model_cfg.feature_stats_reference
    if reference is None:
        if model_cfg.name not in _WARNED:
            _WARNED.add(model_cfg.name)
            log.warning("%s: no feature_stats_reference, so feature_align is off; turn it on with `m2f-ttt calibrate "
                        "--model-dir DIR FOOTAGE...` (your own videos or image folders)", model_cfg.name)
        return None
    return FeatureAlignment(reference, cfg.guard.feature_align)
