"""h∘f of the Y-model equals transformers' Mask2FormerForUniversalSegmentation for the same weights."""

from __future__ import annotations

import torch
from transformers import Mask2FormerForUniversalSegmentation

from model.config import tiny_config
from model.hf_config import mask2former_config
from model.ymodel import build_model

# YModel prefix -> Mask2FormerForUniversalSegmentation prefix
Y_TO_HF = {
    "encoder.backbone.": "model.pixel_level_module.encoder.",
    "head.pixel_decoder.": "model.pixel_level_module.decoder.",
    "head.transformer.": "model.transformer_module.",
    "head.class_predictor.": "class_predictor.",
}


def test_head_equals_hf_mask2former_for_same_weights():
    cfg = tiny_config()
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # move every weight away from its structured initialisation
        for p in model.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=g))
    torch.manual_seed(123)
    hf = Mask2FormerForUniversalSegmentation(mask2former_config(cfg)).eval()

    hf_state = hf.state_dict()
    copied = set()
    for key, value in model.state_dict().items():
        prefix = next((p for p in Y_TO_HF if key.startswith(p)), None)
        if prefix is None:
            assert key.startswith("recon."), key
            continue
        hf_key = Y_TO_HF[prefix] + key[len(prefix) :]
        assert hf_state[hf_key].shape == value.shape, hf_key
        hf_state[hf_key] = value
        copied.add(hf_key)
    assert set(hf_state) - copied == {"criterion.empty_weight"}
    hf.load_state_dict(hf_state, strict=True)

    x = torch.randn(2, 4, 64, 96, generator=g)  # any 4th channel: both models read all 4 channels
    with torch.no_grad():
        ref = hf(pixel_values=x, output_auxiliary_logits=True)
        out = model.predict(x)
    assert torch.allclose(out.class_logits, ref.class_queries_logits, atol=1e-5)
    assert torch.allclose(out.mask_logits, ref.masks_queries_logits, atol=1e-5)
    aux = ref.auxiliary_logits
    assert aux is not None and len(aux) == len(out.aux) == cfg.head.decoder_layers - 1
    for mine, theirs in zip(out.aux, aux, strict=True):
        assert torch.allclose(mine["class_queries_logits"], theirs["class_queries_logits"], atol=1e-5)
        assert torch.allclose(mine["masks_queries_logits"], theirs["masks_queries_logits"], atol=1e-5)
