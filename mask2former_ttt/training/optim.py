"""Optimizer and schedule for joint training (Mask2Former's recipe)."""

from __future__ import annotations

import torch

from model.ymodel import ENCODER_PREFIX, YModel
from mask2former_ttt.training.config import TrainConfig
from mask2former_ttt.ttt.param_groups import no_weight_decay


def build_optimizer(model: YModel, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW; backbone (f) lr × backbone_lr_mult; no decay on norms, biases, embeddings, position tables."""
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups.setdefault((name.startswith(ENCODER_PREFIX), no_weight_decay(name, p)), []).append(p)
    return torch.optim.AdamW(
        [
            {
                "params": ps,
                "lr": cfg.lr * (cfg.backbone_lr_mult if backbone else 1.0),
                "weight_decay": 0.0 if nodecay else cfg.weight_decay,
            }
            for (backbone, nodecay), ps in sorted(groups.items())
        ],
        lr=cfg.lr,
    )


def poly_schedule(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up then poly decay: lr · (1 - step / steps) ** power."""

    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        return max(0.0, 1.0 - step / cfg.steps) ** cfg.poly_power

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
