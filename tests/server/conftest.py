"""Fixtures for the service tests (helpers live in svc_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model.checkpoint import save_checkpoint
from model.config import preset
from model.ymodel import build_model
from tests.server.svc_helpers import THING_IDS


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised tiny Y-model saved in the project's checkpoint format."""
    torch.manual_seed(0)
    model = build_model(preset("tiny", thing_class_ids=THING_IDS))
    return save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "tiny")
