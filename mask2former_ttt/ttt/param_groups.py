"""Which tensors a stream adapts, and their optimizer groups (backbone lr multiplier, no decay on norms etc.)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import torch
from torch import nn

from model.ymodel import ENCODER_PREFIX, RECON_PREFIX, YModel
from mask2former_ttt.ttt.config import TTTConfig

NO_DECAY_MARKERS = ("norm", "embeddings", "relative_position_bias_table", "level_embed", "queries_", "query_")

NameFilter = Callable[[str, nn.Module], bool]


def mae_names(model: YModel, cfg: TTTConfig) -> list[str]:
    """What TTT-MAE adapts: f's (and g's, unless `adapt_recon` is off) parameters under `encoder.` / `recon.`,
    narrowed by `cfg.adapt_scope` (see `in_scope`)."""
    prefixes = (ENCODER_PREFIX, RECON_PREFIX) if cfg.adapt_recon else (ENCODER_PREFIX,)
    late = late_encoder_markers(model)
    return [
        n for n, p in model.named_parameters() if n.startswith(prefixes) and in_scope(n, p, cfg.adapt_scope, late)
    ]


def late_encoder_markers(model: YModel) -> tuple[str, ...]:
    """Name fragments of f's last half of stages (Swin `layers.i`, its `stage{i+1}` output norm) and its final norm."""
    stages = len(model.cfg.swin.depths)
    late = range(stages // 2, stages)
    return (
        *(f".encoder.layers.{i}." for i in late),
        *(f".hidden_states_norms.stage{i + 1}." for i in late),
        ".swin.layernorm.",
    )


def in_scope(name: str, tensor: torch.Tensor, scope: str, late_markers: tuple[str, ...]) -> bool:
    """Whether tensor `name` adapts under `scope`: `all`; `late` (g, and f's late stages only); `norms_biases`
    (1-D tensors: norm affines and biases)."""
    if scope in ("all", "lowrank"):  # lowrank: every tensor, the ≥2-D ones through factors (ttt/low_rank.py)
        return True
    if scope == "norms_biases":
        return tensor.ndim == 1
    if scope == "late":
        return not name.startswith(ENCODER_PREFIX) or any(m in name for m in late_markers)
    raise ValueError(f"unknown adapt_scope {scope!r}")


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
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, foreach=True)
    return torch.optim.AdamW(groups, lr=cfg.lr, foreach=True)
