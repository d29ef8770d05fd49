"""Fixtures shared by the safe-adaptation gates' tests."""

from __future__ import annotations

import pytest
import torch

from tests.gate_scenes import training_stills


@pytest.fixture
def training(tiny_model) -> list[torch.Tensor]:
    """24 scenes of random colour blocks (3, h, w) uint8 at the tiny model's working resolution."""
    return training_stills(tiny_model.cfg.image_size)
