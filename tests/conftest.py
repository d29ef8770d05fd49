"""Shared fixtures: a tiny Y-model built once per session, threads pinned for 2-core CI."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)  # predictable on 2 shared cores; servers under test run their own worker thread


@pytest.fixture(scope="session")
def tiny_model():
    from model.config import preset
    from model.ymodel import build_model

    torch.manual_seed(0)
    return build_model(preset("tiny")).eval()


@pytest.fixture
def frames():
    """A smooth synthetic clip: 8 frames (3, 96, 128) uint8 of a drifting gradient with a square."""
    g = torch.Generator().manual_seed(0)
    base = torch.rand(3, 96, 160, generator=g)
    out = []
    for t in range(8):
        img = base[:, :, t * 4 : t * 4 + 128].clone()
        img[:, 30:60, 40 + t : 70 + t] = 0.9
        out.append((img * 255).to(torch.uint8))
    return out
