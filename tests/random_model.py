"""Test support: a Y-model with non-trivial values in every tensor (fresh inits have zero biases and unit norms
that could hide a tensor a converter skipped)."""

from __future__ import annotations

import torch

from model.config import ModelConfig
from model.ymodel import YModel, build_model


def random_model(cfg: ModelConfig, seed: int) -> YModel:
    """`build_model(cfg)` in eval mode with 0.02-scale noise added to every parameter (reproducible by seed)."""
    torch.manual_seed(seed)
    model = build_model(cfg).eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=g))
    return model


def without_drop_path(model):
    """A copy of `model` whose drop-path never drops (a TTT step then equals a plain forward and backward)."""
    import copy

    from model.stochastic_depth import StreamDropPath

    plain = copy.deepcopy(model)
    for m in plain.modules():
        if isinstance(m, StreamDropPath):
            m.drop_prob = 0.0
    return plain
