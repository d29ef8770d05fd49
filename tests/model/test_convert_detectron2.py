"""Detectron2 -> Y-model conversion on synthetic checkpoints with the exact detectron2 key names and shapes.

The key/shape template and the inverse mapping below are written independently of `model.convert_detectron2`,
from the module definitions of renwang435/video-ttt-release (mask2former/modeling/backbone/swin.py,
pixel_decoder/msdeformattn.py, transformer_decoder/mask2former_transformer_decoder.py, maskformer_ttt_model.py).
"""

from __future__ import annotations

import pickle
import re
from collections import OrderedDict

import numpy as np
import pytest
import torch

from model.checkpoint import load_checkpoint
from model.config import ModelConfig, tiny_config
from model.convert_detectron2 import (
    convert_detectron2_checkpoint,
    detectron2_to_ymodel,
    load_detectron2_state,
)
from model.weight_transfer import PATCH_EMBED_KEY
from model.ymodel import YModel, build_model
from tests.random_model import random_model

RECON_QUERIES = 48
SWIN_FINAL_NORM = "encoder.backbone.swin.layernorm."


# ---------------------------------------------------------------------------------------------------------------
# Template: detectron2 key -> shape, for MaskFormerTTT (backbone + sem_seg_head + recon_head + criterion)


def _ln(prefix: str, dim: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.weight": (dim,), f"{prefix}.bias": (dim,)}


def _linear(prefix: str, out_dim: int, in_dim: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.weight": (out_dim, in_dim), f"{prefix}.bias": (out_dim,)}


def swin_template(cfg: ModelConfig, in_chans: int) -> dict[str, tuple[int, ...]]:
    s, t = cfg.swin, {}
    c, p, w = s.embed_dim, s.patch_size, s.window_size
    t["backbone.patch_embed.proj.weight"] = (c, in_chans, p, p)
    t["backbone.patch_embed.proj.bias"] = (c,)
    t |= _ln("backbone.patch_embed.norm", c)
    for i, (depth, heads) in enumerate(zip(s.depths, s.num_heads, strict=True)):
        dim = c * 2**i
        hidden = int(dim * s.mlp_ratio)
        for j in range(depth):
            b = f"backbone.layers.{i}.blocks.{j}."
            t |= _ln(b + "norm1", dim)
            t[b + "attn.relative_position_bias_table"] = ((2 * w - 1) ** 2, heads)
            t[b + "attn.relative_position_index"] = (w * w, w * w)
            t |= _linear(b + "attn.qkv", 3 * dim, dim) | _linear(b + "attn.proj", dim, dim)
            t |= _ln(b + "norm2", dim) | _linear(b + "mlp.fc1", hidden, dim) | _linear(b + "mlp.fc2", dim, hidden)
        if i < 3:
            t[f"backbone.layers.{i}.downsample.reduction.weight"] = (2 * dim, 4 * dim)
            t |= _ln(f"backbone.layers.{i}.downsample.norm", 4 * dim)
        t |= _ln(f"backbone.norm{i}", dim)
    return t


def head_template(cfg: ModelConfig, prefix: str, queries: int, with_class: bool) -> dict[str, tuple[int, ...]]:
    h, t = cfg.head, {}
    d, m, hd = h.feature_size, h.mask_feature_size, h.hidden_dim
    chans = [cfg.swin.embed_dim * 2**i for i in range(4)]
    pd = prefix + "pixel_decoder."
    for k, c in enumerate(reversed(chans[1:])):  # res5, res4, res3
        t[f"{pd}input_proj.{k}.0.weight"] = (d, c, 1, 1)
        t[f"{pd}input_proj.{k}.0.bias"] = (d,)
        t |= _ln(f"{pd}input_proj.{k}.1", d)
    t[pd + "transformer.level_embed"] = (3, d)
    heads = h.num_attention_heads
    for layer in range(h.encoder_layers):
        e = f"{pd}transformer.encoder.layers.{layer}."
        t |= _linear(e + "self_attn.sampling_offsets", heads * 3 * 4 * 2, d)
        t |= _linear(e + "self_attn.attention_weights", heads * 3 * 4, d)
        t |= _linear(e + "self_attn.value_proj", d, d) | _linear(e + "self_attn.output_proj", d, d)
        t |= _ln(e + "norm1", d) | _ln(e + "norm2", d)
        t |= _linear(e + "linear1", h.encoder_feedforward_dim, d) | _linear(e + "linear2", d, h.encoder_feedforward_dim)
    t[pd + "mask_features.weight"] = (m, d, 1, 1)
    t[pd + "mask_features.bias"] = (m,)
    t[pd + "adapter_1.weight"] = (d, chans[0], 1, 1)
    t |= _ln(pd + "adapter_1.norm", d)
    t[pd + "layer_1.weight"] = (d, d, 3, 3)
    t |= _ln(pd + "layer_1.norm", d)
    pr = prefix + "predictor."
    for i in range(h.decoder_layers - 1):
        sa = f"{pr}transformer_self_attention_layers.{i}."
        t[sa + "self_attn.in_proj_weight"] = (3 * hd, hd)
        t[sa + "self_attn.in_proj_bias"] = (3 * hd,)
        t |= _linear(sa + "self_attn.out_proj", hd, hd) | _ln(sa + "norm", hd)
        ca = f"{pr}transformer_cross_attention_layers.{i}."
        t[ca + "multihead_attn.in_proj_weight"] = (3 * hd, hd)
        t[ca + "multihead_attn.in_proj_bias"] = (3 * hd,)
        t |= _linear(ca + "multihead_attn.out_proj", hd, hd) | _ln(ca + "norm", hd)
        ffn = f"{pr}transformer_ffn_layers.{i}."
        t |= _linear(ffn + "linear1", h.dim_feedforward, hd) | _linear(ffn + "linear2", hd, h.dim_feedforward)
        t |= _ln(ffn + "norm", hd)
    t |= _ln(pr + "decoder_norm", hd)
    t[pr + "query_feat.weight"] = (queries, hd)
    t[pr + "query_embed.weight"] = (queries, hd)
    t[pr + "level_embed.weight"] = (3, hd)
    if with_class:
        t |= _linear(pr + "class_embed", cfg.num_classes + 1, hd)
    t |= _linear(pr + "mask_embed.layers.0", hd, hd) | _linear(pr + "mask_embed.layers.1", hd, hd)
    t |= _linear(pr + "mask_embed.layers.2", m, hd)
    return t


def d2_template(cfg: ModelConfig, in_chans: int = 4, with_recon: bool = True) -> dict[str, tuple[int, ...]]:
    t = swin_template(cfg, in_chans) | head_template(cfg, "sem_seg_head.", cfg.head.num_queries, with_class=True)
    if with_recon:
        t |= head_template(cfg, "recon_head.", RECON_QUERIES, with_class=False)
    t["criterion.empty_weight"] = (cfg.num_classes + 1,)
    return t


def d2_relative_position_index(w: int) -> np.ndarray:
    """detectron2 WindowAttention's buffer, (w*w, w*w) int64."""
    coords = np.stack(np.meshgrid(np.arange(w), np.arange(w), indexing="ij")).reshape(2, -1)
    rel = (coords[:, :, None] - coords[:, None, :]).transpose(1, 2, 0) + (w - 1)
    return (rel[:, :, 0] * (2 * w - 1) + rel[:, :, 1]).astype(np.int64)


def random_d2_state(cfg: ModelConfig, in_chans: int = 4, with_recon: bool = True, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    out = {}
    for key, shape in d2_template(cfg, in_chans, with_recon).items():
        if key.endswith("relative_position_index"):
            out[key] = d2_relative_position_index(cfg.swin.window_size)
        else:
            out[key] = rng.standard_normal(shape).astype(np.float32) * 0.05
    return out


# ---------------------------------------------------------------------------------------------------------------
# Inverse mapping: Y-model state -> detectron2 state (fusing q/k/v), for round trips

# (detectron2 regex, Y-model template); `{h}` is the head prefix mapping below.
_B, _YB = r"backbone\.layers\.(\d+)\.blocks\.(\d+)\.", "encoder.backbone.swin.encoder.layers.{0}.blocks.{1}."
_E, _YE = r"{h}\.pixel_decoder\.transformer\.encoder\.layers\.(\d+)\.", "{h}.pixel_decoder.encoder.layers.{0}."
_PD, _P, _YD = r"{h}\.pixel_decoder\.", r"{h}\.predictor\.", "{h}.transformer.decoder.layers.{0}."
_INVERSE = [
    (r"backbone\.patch_embed\.proj\.(\w+)", "encoder.backbone.swin.embeddings.patch_embeddings.projection.{0}"),
    (r"backbone\.patch_embed\.norm\.(\w+)", "encoder.backbone.swin.embeddings.norm.{0}"),
    (_B + r"norm1\.(\w+)", _YB + "layernorm_before.{2}"),
    (_B + r"norm2\.(\w+)", _YB + "layernorm_after.{2}"),
    (_B + r"attn\.relative_position_bias_table", _YB + "attention.relative_position_bias.relative_position_bias_table"),
    (_B + r"attn\.qkv\.(\w+)", _YB + "attention.[qkv]_proj.{2}"),
    (_B + r"attn\.proj\.(\w+)", _YB + "attention.o_proj.{2}"),
    (_B + r"mlp\.(fc\d)\.(\w+)", _YB + "mlp.{2}.{3}"),
    (r"backbone\.layers\.(\d+)\.downsample\.(.+)", "encoder.backbone.swin.encoder.layers.{0}.downsample.{1}"),
    (r"backbone\.norm(\d)\.(\w+)", "encoder.backbone.hidden_states_norms.stage{0+1}.{1}"),
    (_PD + r"(adapter_1|layer_1)\.weight", "{h}.pixel_decoder.{0}.0.weight"),
    (_PD + r"(adapter_1|layer_1)\.norm\.(\w+)", "{h}.pixel_decoder.{0}.1.{1}"),
    (_PD + r"input_proj\.(.+)", "{h}.pixel_decoder.input_projections.{0}"),
    (_PD + r"transformer\.level_embed", "{h}.pixel_decoder.level_embed"),
    (_E + r"self_attn\.(.+)", _YE + "self_attn.{1}"),
    (_E + r"norm1\.(\w+)", _YE + "self_attn_layer_norm.{1}"),
    (_E + r"norm2\.(\w+)", _YE + "final_layer_norm.{1}"),
    (_E + r"linear(\d)\.(\w+)", _YE + "fc{1}.{2}"),
    (_PD + r"mask_features\.(\w+)", "{h}.pixel_decoder.mask_projection.{0}"),
    (_P + r"query_embed\.weight", "{h}.transformer.queries_embedder.weight"),
    (_P + r"query_feat\.weight", "{h}.transformer.queries_features.weight"),
    (_P + r"level_embed\.weight", "{h}.transformer.level_embed.weight"),
    (_P + r"transformer_self_attention_layers\.(\d+)\.self_attn\.in_proj_(\w+)", _YD + "self_attn.[qkv]_proj.{1}"),
    (_P + r"transformer_self_attention_layers\.(\d+)\.self_attn\.out_proj\.(\w+)", _YD + "self_attn.out_proj.{1}"),
    (_P + r"transformer_self_attention_layers\.(\d+)\.norm\.(\w+)", _YD + "self_attn_layer_norm.{1}"),
    (_P + r"transformer_cross_attention_layers\.(\d+)\.multihead_attn\.(.+)", _YD + "cross_attn.{1}"),
    (_P + r"transformer_cross_attention_layers\.(\d+)\.norm\.(\w+)", _YD + "cross_attn_layer_norm.{1}"),
    (_P + r"transformer_ffn_layers\.(\d+)\.linear(\d)\.(\w+)", _YD + "fc{1}.{2}"),
    (_P + r"transformer_ffn_layers\.(\d+)\.norm\.(\w+)", _YD + "final_layer_norm.{1}"),
    (_P + r"decoder_norm\.(\w+)", "{h}.transformer.decoder.layernorm.{0}"),
    (_P + r"mask_embed\.layers\.(\d)\.(\w+)", "{h}.transformer.decoder.mask_predictor.mask_embedder.{0}.0.{1}"),
    (r"sem_seg_head\.predictor\.class_embed\.(\w+)", "head.class_predictor.{0}"),
]
_HEADS = {"sem_seg_head": "head", "recon_head": "recon.head"}


def _y_key(d2_key: str) -> str:
    for pattern, template in _INVERSE:
        for d2_head, y_head in _HEADS.items():
            m = re.fullmatch(pattern.replace("{h}", re.escape(d2_head)), d2_key)
            if m:
                groups = list(m.groups())
                out = template.replace("{h}", y_head)
                if "{0+1}" in out:
                    out = out.replace("{0+1}", str(int(groups[0]) + 1))
                return out.format(*groups)
    raise KeyError(d2_key)


def ymodel_to_d2(model: YModel, in_chans: int = 4, with_recon: bool = True) -> dict[str, np.ndarray]:
    """The detectron2 state dict that `model` corresponds to (q/k/v fused back, patch embed cut to `in_chans`)."""
    y = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    out = {}
    for key in d2_template(model.cfg, in_chans, with_recon):
        if key.endswith("relative_position_index"):
            out[key] = d2_relative_position_index(model.cfg.swin.window_size)
        elif key == "criterion.empty_weight":
            out[key] = np.r_[np.ones(model.cfg.num_classes, np.float32), np.float32(0.1)]
        else:
            target = _y_key(key)
            if "[qkv]" in target:
                out[key] = np.concatenate([y[target.replace("[qkv]", c)] for c in "qkv"], axis=0)
            else:
                out[key] = y[target][:, :in_chans] if target == PATCH_EMBED_KEY else y[target]
    return out


def _write_pickle(path, state, container: str = "model") -> None:
    obj = {"model": state, "__author__": "test", "matching_heuristics": False} if container == "model" else state
    with open(path, "wb") as fh:
        pickle.dump(obj, fh)


def _inputs(seed: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, 64, 96, generator=g)
    visible = (torch.rand(2, 1, 64, 96, generator=g) > 0.5).float()
    return x, torch.cat([x * visible, visible], dim=1)


@pytest.fixture(scope="module")
def cfg() -> ModelConfig:
    return tiny_config()


# ---------------------------------------------------------------------------------------------------------------
# Tests


def test_template_matches_inverse_mapping(cfg):
    """The two test-side descriptions of the detectron2 layout agree with each other and with the Y-model."""
    model = build_model(cfg)
    y_state = model.state_dict()
    d2 = ymodel_to_d2(model)
    template = d2_template(cfg)
    assert set(d2) == set(template)
    assert all(d2[k].shape == template[k] for k in template)
    mapped = [_y_key(k) for k in template if not k.endswith(("index", "empty_weight"))]
    covered = {key.replace("[qkv]", c) for key in mapped for c in "qkv"}
    missed = {k for k in y_state if k not in covered and not k.startswith(SWIN_FINAL_NORM)}
    assert not missed


def test_release_template_every_key_consumed(cfg, tmp_path):
    path = tmp_path / "ttt_ks_semantic_baseline.pkl"
    state = random_d2_state(cfg)
    _write_pickle(path, state)
    model, report = detectron2_to_ymodel(load_detectron2_state(path), "tiny", name=path.stem)
    assert set(report.consumed) | set(report.ignored) == set(state)
    assert report.ignored == ["criterion.empty_weight"]
    assert not report.surgery
    assert set(report.filled) | set(report.left) == set(model.state_dict())
    assert all(k.startswith(SWIN_FINAL_NORM) for k in report.left)  # g is filled from recon_head
    assert model.cfg.task == "semantic" and model.cfg.recon.variant == "release"
    got = model.state_dict()
    assert torch.equal(got[PATCH_EMBED_KEY], torch.from_numpy(state["backbone.patch_embed.proj.weight"]))
    qkv = torch.from_numpy(state["backbone.layers.2.blocks.1.attn.qkv.weight"])
    k_proj = got["encoder.backbone.swin.encoder.layers.2.blocks.1.attention.k_proj.weight"]
    assert torch.equal(k_proj, qkv[qkv.shape[0] // 3 : 2 * qkv.shape[0] // 3])
    recon_q = got["recon.head.transformer.queries_features.weight"]
    assert torch.equal(recon_q, torch.from_numpy(state["recon_head.predictor.query_feat.weight"]))


def test_public_template_surgery_and_fresh_g(cfg, tmp_path):
    path = tmp_path / "model_final_coco_panoptic.pkl"
    state = random_d2_state(cfg, in_chans=3, with_recon=False, seed=1)
    _write_pickle(path, state)
    model, report = detectron2_to_ymodel(load_detectron2_state(path), "tiny", name=path.stem,
                                         overrides={"thing_class_ids": [0, 1, 2]})  # fmt: skip
    assert set(report.consumed) | set(report.ignored) == set(state)
    assert report.surgery and model.cfg.task == "panoptic" and model.cfg.thing_class_ids == [0, 1, 2]
    recon_keys = {k for k in model.state_dict() if k.startswith("recon.")}
    assert recon_keys and recon_keys <= set(report.left)
    assert all(k.startswith(("recon.", SWIN_FINAL_NORM)) for k in report.left)
    weight = model.state_dict()[PATCH_EMBED_KEY]
    assert torch.equal(weight[:, :3], torch.from_numpy(state["backbone.patch_embed.proj.weight"]))
    assert torch.count_nonzero(weight[:, 3]) == 0


def test_release_round_trip_reproduces_outputs(cfg, tmp_path):
    original = random_model(cfg, seed=10)
    path = tmp_path / "ttt_coco_instance_baseline.pkl"
    _write_pickle(path, ymodel_to_d2(original))
    model, _ = detectron2_to_ymodel(load_detectron2_state(path), "tiny", name=path.stem)
    assert model.cfg.task == "instance"
    x, x4 = _inputs()
    with torch.no_grad():
        ref, out = original.predict(x), model.predict(x)
        ref_rec, out_rec = original.reconstruct(x4), model.reconstruct(x4)
    assert torch.equal(out.class_logits, ref.class_logits)
    assert torch.equal(out.mask_logits, ref.mask_logits)
    assert torch.equal(out_rec, ref_rec)
    original_state = original.state_dict()
    for key, value in model.state_dict().items():
        if not key.startswith(SWIN_FINAL_NORM):
            assert torch.equal(value, original_state[key]), key


def test_public_round_trip_reproduces_main_outputs(cfg, tmp_path):
    original = random_model(cfg, seed=20)
    with torch.no_grad():  # a public checkpoint knows nothing about the 4th channel
        original.state_dict()[PATCH_EMBED_KEY][:, 3] = 0.0
    path = tmp_path / "public.pkl"
    _write_pickle(path, ymodel_to_d2(original, in_chans=3, with_recon=False), container="flat")
    model, report = detectron2_to_ymodel(load_detectron2_state(path), "tiny")
    x, _ = _inputs()
    with torch.no_grad():
        ref, out = original.predict(x), model.predict(x)
    assert torch.equal(out.class_logits, ref.class_logits)
    assert torch.equal(out.mask_logits, ref.mask_logits)
    assert report.surgery


def test_convert_checkpoint_writes_loadable_directory(cfg, tmp_path):
    original = random_model(cfg, seed=30)
    pkl = tmp_path / "ttt_ks_semantic_baseline.pkl"
    state = OrderedDict((k, v) for k, v in ymodel_to_d2(original).items())
    state._metadata = OrderedDict({"": {"version": 1}})  # torch state dicts carry this; pickles keep it
    _write_pickle(pkl, state)
    out = convert_detectron2_checkpoint(pkl, tmp_path / "converted", "tiny")
    loaded = load_checkpoint(out)
    x, x4 = _inputs()
    with torch.no_grad():
        assert torch.equal(loaded.predict(x).mask_logits, original.predict(x).mask_logits)
        assert torch.equal(loaded.reconstruct(x4), original.reconstruct(x4))


def test_pth_container_and_module_prefix(cfg, tmp_path):
    state = random_d2_state(cfg, seed=3)
    path = tmp_path / "ckpt.pth"
    torch.save({"model": {f"module.{k}": torch.from_numpy(v) for k, v in state.items()}, "iteration": 7}, path)
    loaded = load_detectron2_state(path)
    assert set(loaded) == set(state)
    detectron2_to_ymodel(loaded, "tiny")


def test_architecture_is_read_from_shapes(cfg, tmp_path):
    """A swin-s preset with a tiny checkpoint: dimensions and class count come from the tensors."""
    state = {k: torch.from_numpy(v) for k, v in random_d2_state(cfg, seed=4).items()}
    model, _ = detectron2_to_ymodel(state, "swin-s", overrides={"swin": {"drop_path_rate": 0.0}})
    assert model.cfg.swin.depths == cfg.swin.depths and model.cfg.swin.window_size == cfg.swin.window_size
    assert model.cfg.head.model_dump() == cfg.head.model_dump() | {"train_num_points": 12544}
    assert model.cfg.num_classes == cfg.num_classes and model.cfg.swin.drop_path_rate == 0.0


def test_unknown_and_missing_keys_are_listed(cfg):
    state = {k: torch.from_numpy(v) for k, v in random_d2_state(cfg, seed=5).items()}
    extra = dict(state, **{"backbone.absolute_pos_embed": torch.zeros(1, 32, 8, 8), "foo.bar": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"(?s)unknown or leftover keys.*backbone\.absolute_pos_embed.*foo\.bar"):
        detectron2_to_ymodel(extra, "tiny")
    missing = {k: v for k, v in state.items() if not k.startswith("sem_seg_head.predictor.transformer_ffn_layers.1.")}
    pattern = r"missing:\s+sem_seg_head\.predictor\.transformer_ffn_layers\.1\.linear1\.bias"
    with pytest.raises(ValueError, match=pattern):
        detectron2_to_ymodel(missing, "tiny")


def test_shape_mismatch_and_bad_index_are_reported(cfg):
    state = {k: torch.from_numpy(v) for k, v in random_d2_state(cfg, seed=6).items()}
    bad = dict(state)
    bad["sem_seg_head.pixel_decoder.layer_1.weight"] = torch.zeros(64, 64, 1, 1)
    with pytest.raises(ValueError, match=r"shape mismatches:\s+head\.pixel_decoder\.layer_1\.0\.weight"):
        detectron2_to_ymodel(bad, "tiny")
    bad = dict(state)
    key = "backbone.layers.1.blocks.0.attn.relative_position_index"
    bad[key] = torch.flip(bad[key], dims=[0])
    with pytest.raises(ValueError, match="relative_position_index"):
        detectron2_to_ymodel(bad, "tiny")


def test_legacy_names_are_upgraded(cfg):
    state = {k: torch.from_numpy(v) for k, v in random_d2_state(cfg, seed=7).items()}
    legacy = {}
    for k, v in state.items():
        k = k.replace("predictor.query_feat.", "predictor.static_query.")
        k = re.sub(r"^(sem_seg_head|recon_head)\.pixel_decoder\.", r"\1.", k)
        legacy[k] = v
    _, report = detectron2_to_ymodel(legacy, "tiny")
    assert len(report.consumed) + len(report.ignored) == len(state)


def test_untrusted_pickle_globals_are_refused(tmp_path):
    path = tmp_path / "evil.pkl"
    with open(path, "wb") as fh:
        pickle.dump({"model": {"x": np.zeros(2)}, "hook": OrderedDict, "cls": ModelConfig}, fh)
    with pytest.raises(pickle.UnpicklingError, match="trust_pickle"):
        load_detectron2_state(path)
