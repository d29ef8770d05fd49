"""Own checkpoint format: save -> load gives identical outputs; bad directories fail clearly."""

from __future__ import annotations

import pytest
import torch

from model.checkpoint import bundled_model_dir, load_checkpoint, load_config, save_checkpoint


def test_round_trip_identical_outputs(tiny_model, tmp_path):
    save_checkpoint(tiny_model, tmp_path / "ck")
    loaded = load_checkpoint(tmp_path / "ck")
    x = torch.randn(1, 4, 96, 128)
    with torch.no_grad():
        a, b = tiny_model.predict(x), loaded.predict(x)
        assert torch.equal(a.class_logits, b.class_logits) and torch.equal(a.mask_logits, b.mask_logits)
        assert torch.equal(tiny_model.reconstruct(x), loaded.reconstruct(x))
    assert loaded.cfg == tiny_model.cfg


def test_missing_files_raise(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_checkpoint(tmp_path)


def test_bundled_model_loads():
    d = bundled_model_dir()
    if not (d / "model.safetensors").is_file():
        pytest.fail(f"the bundled default model is missing at {d}")
    cfg = load_config(d)
    model = load_checkpoint(d)
    assert cfg.recon_loss_reference is not None and model.cfg.num_classes == len(cfg.class_names)
