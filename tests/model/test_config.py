"""Model presets, parameter counts and device selection."""

from __future__ import annotations

import pytest
import torch

from model.config import ModelConfig, preset
from model.device import autocast, resolve_device
from model.ymodel import build_model, parameter_counts


def test_tiny_preset_is_small_and_swin_s_matches_the_paper():
    tiny = parameter_counts(build_model(preset("tiny")))
    assert 1.0e6 <= tiny["f+h"] <= 2.5e6
    cfg = preset("swin-s")
    assert (cfg.swin.embed_dim, cfg.swin.depths, cfg.swin.num_heads, cfg.swin.window_size) == (96, [2, 2, 18, 2], [3, 6, 12, 24], 7)
    counts = parameter_counts(build_model(cfg))
    assert 68e6 <= counts["f+h"] <= 70e6, counts  # paper: ≈ 69 M


def test_encoder_reads_four_channels_and_returns_four_strides(tiny_model):
    feats = tiny_model.encode(torch.randn(1, 4, 128, 160))
    assert [f.shape[-2:] for f in feats] == [(32, 40), (16, 20), (8, 10), (4, 5)]
    assert tiny_model.encoder.backbone.swin.embeddings.patch_embeddings.projection.weight.shape[1] == 4


def test_light_and_release_g_reconstruct_full_resolution():
    for variant in ("light", "release"):
        cfg = preset("tiny")
        cfg.recon.variant = variant
        m = build_model(cfg).eval()
        assert m.reconstruct(torch.randn(2, 4, 96, 128)).shape == (2, 3, 96, 128)


def test_config_validation_errors_are_clear():
    with pytest.raises(ValueError, match="thing_class_ids"):
        ModelConfig(class_names=["a", "b"], thing_class_ids=[5])
    with pytest.raises(ValueError, match="unknown model preset"):
        preset("swin-xxl")


def test_device_auto_falls_back_to_cpu_and_amp_is_a_noop_there():
    dev = resolve_device("auto")
    assert dev.type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            resolve_device("cuda")
    with autocast(torch.device("cpu")):
        assert torch.ones(1).dtype == torch.float32
