"""load_hf_mask2former: a saved 3-channel HF Mask2Former becomes a Y-model with identical h∘f outputs."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import Mask2FormerForUniversalSegmentation

from model.config import tiny_config
from model.hf_config import mask2former_config
from model.hf_import import hf_key_to_ymodel, load_hf_mask2former, load_hf_mask2former_with_report
from model.recon_decoder import ReleaseReconDecoder
from model.weight_transfer import PATCH_EMBED_KEY, expand_patch_embedding

NAMES = [f"thing_{i}" for i in range(5)] + [f"stuff_{i}" for i in range(4)]


def _randomize_(module: torch.nn.Module, seed: int) -> None:
    """Non-trivial values everywhere (fresh inits have zero biases / unit norms that could hide mapping bugs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=g))


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    """A tiny random 3-channel Mask2FormerForUniversalSegmentation saved with save_pretrained."""
    cfg = tiny_config(class_names=NAMES)
    hf_cfg = mask2former_config(cfg)
    hf_cfg.backbone_config.num_channels = 3
    hf_cfg.id2label = dict(enumerate(NAMES))
    hf_cfg.label2id = {n: i for i, n in enumerate(NAMES)}
    hf_cfg.thing_class_ids = [0, 1, 2, 3, 4]
    torch.manual_seed(1)
    hf = Mask2FormerForUniversalSegmentation(hf_cfg).eval()
    _randomize_(hf, seed=2)
    directory = tmp_path_factory.mktemp("hf") / "mask2former-tiny-coco-panoptic"
    hf.save_pretrained(directory)
    pre = {"image_mean": [123.675, 116.28, 103.53], "image_std": [58.395, 57.12, 57.375], "size": {"shortest_edge": 96}}
    (directory / "preprocessor_config.json").write_text(json.dumps(pre))
    return directory, hf


@pytest.fixture(scope="module")
def imported(hf_dir):
    directory, _ = hf_dir
    return load_hf_mask2former_with_report(directory)


def test_config_is_derived_from_the_checkpoint(imported):
    model, _ = imported
    cfg = model.cfg
    assert cfg.class_names == NAMES
    assert cfg.thing_class_ids == [0, 1, 2, 3, 4]
    assert cfg.task == "panoptic"
    assert cfg.image_size == 96
    assert cfg.pixel_mean == pytest.approx([0.485, 0.456, 0.406])
    assert cfg.swin.in_channels == 4 and cfg.swin.embed_dim == 32 and cfg.swin.depths == [1, 1, 2, 1]
    assert cfg.head.num_queries == 20 and cfg.head.hidden_dim == 64
    assert isinstance(model.recon, ReleaseReconDecoder)


def test_outputs_match_hf_model(hf_dir, imported):
    _, hf = hf_dir
    model, _ = imported
    x = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = hf(pixel_values=x)
        out = model.predict(x)
    assert torch.allclose(out.class_logits, ref.class_queries_logits, atol=1e-5)
    assert torch.allclose(out.mask_logits, ref.masks_queries_logits, atol=1e-5)


def test_fourth_channel_has_no_effect(imported):
    model, _ = imported
    g = torch.Generator().manual_seed(4)
    x = torch.randn(1, 3, 64, 64, generator=g)
    flags = [torch.ones(1, 1, 64, 64), torch.zeros(1, 1, 64, 64), torch.randn(1, 1, 64, 64, generator=g)]
    with torch.no_grad():
        outs = [model.predict(torch.cat([x, f], dim=1)) for f in flags]
    for out in outs[1:]:
        assert torch.equal(out.class_logits, outs[0].class_logits)
        assert torch.equal(out.mask_logits, outs[0].mask_logits)
    weight = model.state_dict()[PATCH_EMBED_KEY]
    assert weight.shape[1] == 4 and torch.count_nonzero(weight[:, 3]) == 0


def test_every_hf_tensor_is_consumed(hf_dir, imported):
    _, hf = hf_dir
    model, report = imported
    hf_state = hf.state_dict()
    assert set(report.consumed) | set(report.ignored) == set(hf_state)
    assert report.ignored == ["criterion.empty_weight"]
    assert report.surgery
    y_state = model.state_dict()
    for key in report.consumed:
        target = hf_key_to_ymodel(key)
        expected = hf_state[key]
        if target == PATCH_EMBED_KEY:
            expected = expand_patch_embedding(expected)
        assert torch.equal(y_state[target], expected), key
    # only g and Swin's unused final LayerNorm are left at initialisation
    assert all(k.startswith(("recon.", "encoder.backbone.swin.layernorm.")) for k in report.left)
    assert any(k.startswith("recon.") for k in report.left)


def test_overrides_and_light_recon(hf_dir):
    directory, _ = hf_dir
    model = load_hf_mask2former(directory, {"task": "instance", "recon": {"variant": "light"}})
    assert model.cfg.task == "instance"
    assert type(model.recon).__name__ == "LightReconDecoder"


def test_incompatible_override_is_rejected(hf_dir):
    directory, _ = hf_dir
    with pytest.raises(ValueError, match="num_queries"):
        load_hf_mask2former(directory, {"head": {"num_queries": 7}})


def test_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_hf_mask2former(tmp_path)
