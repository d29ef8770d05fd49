"""Which tensors a stream adapts, and their optimizer groups (backbone lr multiplier, no decay on norms etc.)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
from torch import nn

from model.ymodel import ENCODER_PREFIX, RECON_PREFIX, YModel
from mask2former_ttt.ttt.config import TTTConfig

SGD_MOMENTUM = 0.9  # the authors' SGD setting; the presets keep it between frames
NO_DECAY_MARKERS = ("norm", "embeddings", "relative_position_bias_table", "level_embed", "queries_", "query_")



def mae_names(model: YModel) -> list[str]:
    """What TTT-MAE adapts: every parameter of f and g (under `encoder.` / `recon.`); h stays as trained."""
    return [n for n, _ in model.named_parameters() if n.startswith((ENCODER_PREFIX, RECON_PREFIX))]


def encoder_norm_names(model: YModel) -> list[str]:
    """Affine parameters of f's LayerNorms (what Tent adapts)."""
    names = []
    for mod_name, mod in model.encoder.named_modules():
        if isinstance(mod, nn.LayerNorm):
            names += [f"{ENCODER_PREFIX}{mod_name}.{p}" for p, _ in mod.named_parameters(recurse=False)]
    return names


def no_weight_decay(name: str, tensor: torch.Tensor) -> bool:
    """Biases, norms, embeddings and relative-position tables get no weight decay."""
    return tensor.ndim <= 1 or name.endswith(".bias") or any(m in name for m in NO_DECAY_MARKERS)


@dataclass(frozen=True)
class GroupSpec:
    """One optimizer group of adapted tensors: their names, learning rate and weight decay."""

    names: tuple[str, ...]
    lr: float
    weight_decay: float


def group_specs(params: Mapping[str, torch.Tensor], cfg: TTTConfig) -> list[GroupSpec]:
    """Split adapted tensors into (backbone?, decay?) groups with their lr and weight decay (a stable order)."""
    groups: dict[tuple[bool, bool], list[str]] = {}
    for name, tensor in params.items():
        key = (name.startswith(ENCODER_PREFIX), no_weight_decay(name, tensor))
        groups.setdefault(key, []).append(name)
    return [
        GroupSpec(
            tuple(names),
            cfg.lr * (cfg.backbone_lr_mult if is_backbone else 1.0),
            0.0 if no_decay else cfg.weight_decay,
        )
        for (is_backbone, no_decay), names in sorted(groups.items())
    ]


def make_optimizer(groups: list[dict], cfg: TTTConfig) -> torch.optim.Optimizer:
    """SGD (with momentum) or AdamW over `groups` (torch param-group dicts with their lr and weight decay)."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=SGD_MOMENTUM, foreach=True)
    return torch.optim.AdamW(groups, lr=cfg.lr, foreach=True)
