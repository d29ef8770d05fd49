"""Import a Hugging Face Mask2Former (Swin backbone) directory as a Y-model.

Users obtain such a directory with
`Mask2FormerForUniversalSegmentation.from_pretrained("facebook/mask2former-swin-small-...").save_pretrained(dir)`.
`load_hf_mask2former(dir)` reads it strictly offline and returns a `YModel` whose

- f (`encoder.backbone`) is the checkpoint's Swin with the patch embedding widened from 3 to 4 input channels
  (RGB weights copied, the new visible-pixel channel zero-initialised, so h∘f's outputs do not depend on it),
- h (`head`) is the checkpoint's pixel decoder, masked-attention decoder and class predictor,
- g (`recon`) is built from scratch (variant from `ModelConfig.recon.variant`, `release` by default).

Writing the tensors into the Y-model (patch-embedding surgery, strict fill, report) is `model.weight_transfer`,
shared with `model.convert_detectron2`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation

from model.config import ModelConfig
from model.hf_config import mask2former_config
from model.label_sets import is_placeholder, match_label_set
from model.recipes import recipe_sizes
from model.weight_transfer import TransferReport, deep_merge, infer_task, merge_overrides, transfer_into_ymodel
from model.ymodel import YModel, build_model

logger = logging.getLogger(__name__)

# Hugging Face Mask2FormerForUniversalSegmentation state-dict prefix -> YModel state-dict prefix.
HF_TO_YMODEL_PREFIXES: tuple[tuple[str, str], ...] = (
    ("model.pixel_level_module.encoder.", "encoder.backbone."),
    ("model.pixel_level_module.decoder.", "head.pixel_decoder."),
    ("model.transformer_module.", "head.transformer."),
    ("class_predictor.", "head.class_predictor."),
)
# Loss buffers (`criterion.empty_weight` = class weights with the no-object weight); rebuilt from the config.
HF_IGNORED_PREFIXES: tuple[str, ...] = ("criterion.",)

# Fields of the HF configs that ModelConfig cannot express: they must equal what `mask2former_config` builds.
_HEAD_ARCH_FIELDS = (
    "feature_size", "mask_feature_size", "hidden_dim", "encoder_feedforward_dim", "activation_function",
    "encoder_layers", "decoder_layers", "num_attention_heads", "dim_feedforward", "pre_norm",
    "enforce_input_projection", "common_stride", "feature_strides", "num_queries", "num_labels",
)  # fmt: skip
_SWIN_ARCH_FIELDS = (
    "embed_dim", "depths", "num_heads", "window_size", "patch_size", "mlp_ratio", "qkv_bias", "hidden_act",
    "use_absolute_embeddings", "layer_norm_eps", "out_features",
)  # fmt: skip


def _read_preprocessor(directory: Path) -> dict[str, Any]:
    path = directory / "preprocessor_config.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _image_size(pre: Mapping[str, Any], default: int) -> int:
    size = pre.get("size")
    if isinstance(size, int):
        return size
    if isinstance(size, Mapping):
        for key in ("shortest_edge", "height", "width"):
            if isinstance(size.get(key), int):
                return int(size[key])
    return default


def _max_size(pre: Mapping[str, Any]) -> int | None:
    """The long-side cap of the processor's resize (`size.longest_edge`, or the older `max_size`), if any."""
    size = pre.get("size")
    if isinstance(size, Mapping) and isinstance(size.get("longest_edge"), int):
        return int(size["longest_edge"])
    return int(pre["max_size"]) if isinstance(pre.get("max_size"), int) else None


def _mean_std(pre: Mapping[str, Any], cfg: ModelConfig) -> tuple[list[float], list[float]]:
    """ImageNet-style mean/std in [0, 1] units (values given in 0-255 units are rescaled)."""
    mean, std = pre.get("image_mean"), pre.get("image_std")
    if not (isinstance(mean, list) and isinstance(std, list) and len(mean) == 3 and len(std) == 3):
        return list(cfg.pixel_mean), list(cfg.pixel_std)
    scale = 255.0 if max(mean) > 1.0 else 1.0
    return [float(m) / scale for m in mean], [float(s) / scale for s in std]


def _class_names(hf_cfg: Mask2FormerConfig) -> list[str]:
    id2label = {int(k): str(v) for k, v in (hf_cfg.id2label or {}).items()}
    if sorted(id2label) != list(range(len(id2label))):
        raise ValueError(f"id2label ids must be 0..K-1, got {sorted(id2label)[:10]}...")
    return [id2label[i] for i in range(len(id2label))]


def _thing_ids(hf_cfg: Mask2FormerConfig) -> list[int]:
    for name in ("thing_class_ids", "thing_ids"):
        value = getattr(hf_cfg, name, None)
        if value is not None:
            return [int(i) for i in value]
    return []


def model_config_from_hf(
    hf_cfg: Mask2FormerConfig, directory: str | Path | None = None, overrides: Mapping[str, Any] | None = None
) -> ModelConfig:
    """Derive a ModelConfig (4-channel f) from a Hugging Face Mask2FormerConfig, then apply `overrides`.

    Swin and head dimensions, queries, class names (id2label), thing ids (config attribute `thing_class_ids` or
    `thing_ids` if present), image size, long-side cap and mean/std (`preprocessor_config.json` if
    present) and the task (if the directory or model id names one) come from the checkpoint; everything else from
    ModelConfig defaults. A known label set (COCO panoptic / COCO / Cityscapes / ADE20K, model/label_sets.py) gives
    the names of placeholder-named classes and the thing ids the config lacks (colours follow the class names,
    mask2former_ttt/outputs/palette.py). A label set of the authors' release (19 street classes, 80 or 133 COCO
    classes) gets the release's inference size instead of the processor's (model/recipes.py).
    """
    bb = hf_cfg.backbone_config
    if bb is None or getattr(bb, "model_type", None) != "swin":
        raise ValueError(f"only Swin backbones are supported, got backbone {getattr(bb, 'model_type', None)!r}")
    directory = Path(directory) if directory is not None else None
    pre = _read_preprocessor(directory) if directory is not None else {}
    base = ModelConfig()
    mean, std = _mean_std(pre, base)
    names = [str(directory.resolve().name) if directory else "", str(getattr(hf_cfg, "_name_or_path", "") or "")]
    class_names, thing_ids = _class_names(hf_cfg), _thing_ids(hf_cfg)
    known = match_label_set(class_names)
    fields: dict[str, Any] = {
        "name": f"hf-{names[0] or 'mask2former'}",
        "task": infer_task(*names) or base.task,
        "class_names": list(known.class_names) if known and is_placeholder(class_names) else class_names,
        "thing_class_ids": thing_ids or (list(known.thing_ids) if known else []),
        "image_size": _image_size(pre, int(bb.image_size)),
        "max_size": _max_size(pre),
        "pixel_mean": mean,
        "pixel_std": std,
        "swin": {
            "embed_dim": bb.embed_dim,
            "depths": list(bb.depths),
            "num_heads": list(bb.num_heads),
            "window_size": bb.window_size,
            "patch_size": bb.patch_size,
            "mlp_ratio": bb.mlp_ratio,
            "drop_path_rate": bb.drop_path_rate,
            "in_channels": 4,
        },
        "head": {
            "hidden_dim": hf_cfg.hidden_dim,
            "feature_size": hf_cfg.feature_size,
            "mask_feature_size": hf_cfg.mask_feature_size,
            "encoder_layers": hf_cfg.encoder_layers,
            "encoder_feedforward_dim": hf_cfg.encoder_feedforward_dim,
            "decoder_layers": hf_cfg.decoder_layers,
            "num_attention_heads": hf_cfg.num_attention_heads,
            "dim_feedforward": hf_cfg.dim_feedforward,
            "num_queries": hf_cfg.num_queries,
            "train_num_points": hf_cfg.train_num_points,
        },
    }
    fields.update(recipe_sizes(len(fields["class_names"])))  # the release's size for its label sets (model/recipes.py)
    cfg = ModelConfig.model_validate(deep_merge(base.model_dump(), fields))
    return merge_overrides(cfg, overrides)


def _norm(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def check_architecture(hf_cfg: Mask2FormerConfig, cfg: ModelConfig) -> None:
    """Raise if the HF config uses options that `mask2former_config(cfg)` would build differently."""
    expected = mask2former_config(cfg)
    diffs = [
        f"{name}: checkpoint {_norm(getattr(hf_cfg, name, None))!r} vs model {_norm(getattr(expected, name))!r}"
        for name in _HEAD_ARCH_FIELDS
        if _norm(getattr(hf_cfg, name, None)) != _norm(getattr(expected, name))
    ]
    diffs += [
        f"backbone_config.{name}: checkpoint {_norm(getattr(hf_cfg.backbone_config, name, None))!r} "
        f"vs model {_norm(getattr(expected.backbone_config, name))!r}"
        for name in _SWIN_ARCH_FIELDS
        if _norm(getattr(hf_cfg.backbone_config, name, None)) != _norm(getattr(expected.backbone_config, name))
    ]
    if diffs:
        raise ValueError("checkpoint architecture cannot be expressed by ModelConfig:\n  " + "\n  ".join(diffs))
    dropouts = {
        "dropout": hf_cfg.dropout,
        "backbone hidden_dropout_prob": hf_cfg.backbone_config.hidden_dropout_prob,
        "backbone attention_probs_dropout_prob": hf_cfg.backbone_config.attention_probs_dropout_prob,
    }
    if any(v for v in dropouts.values()):
        logger.warning("checkpoint uses dropout %s; the Y-model trains without it (eval unaffected)", dropouts)


def hf_key_to_ymodel(key: str) -> str | None:
    """Map a Mask2FormerForUniversalSegmentation state key to the YModel's; None if the key is ignored.

    Raises KeyError for keys with no known counterpart.
    """
    for src, dst in HF_TO_YMODEL_PREFIXES:
        if key.startswith(src):
            return dst + key[len(src) :]
    if key.startswith(HF_IGNORED_PREFIXES):
        return None
    raise KeyError(key)


def _load_hf(directory: Path) -> Mask2FormerForUniversalSegmentation:
    hf, info = Mask2FormerForUniversalSegmentation.from_pretrained(
        str(directory), local_files_only=True, output_loading_info=True
    )
    missing = sorted(k for k in info.get("missing_keys", ()) if not k.startswith(HF_IGNORED_PREFIXES))
    problems = {
        "missing": missing,
        "unexpected": sorted(info.get("unexpected_keys", ())),
        "mismatched": sorted(str(k) for k in info.get("mismatched_keys", ())),
    }
    if any(problems.values()):
        raise ValueError(f"{directory} does not load cleanly into Mask2FormerForUniversalSegmentation: {problems}")
    return hf.eval()


def transfer_hf_state(hf_state: Mapping[str, torch.Tensor], model: YModel) -> TransferReport:
    """Copy f and h from a Mask2FormerForUniversalSegmentation state dict into `model` (g left as built)."""
    values: dict[str, torch.Tensor] = {}
    consumed, ignored, unknown = [], [], []
    for key, tensor in hf_state.items():
        try:
            target = hf_key_to_ymodel(key)
        except KeyError:
            unknown.append(key)
            continue
        if target is None:
            ignored.append(key)
            continue
        values[target] = tensor
        consumed.append(key)
    if unknown:
        raise ValueError("unknown Hugging Face keys:\n  " + "\n  ".join(sorted(unknown)))
    return transfer_into_ymodel(model, values, consumed, ignored, source_has_recon=False)


def load_hf_mask2former_with_report(
    directory: str | Path, cfg_overrides: Mapping[str, Any] | None = None
) -> tuple[YModel, TransferReport]:
    """`load_hf_mask2former`, also returning what happened to every tensor."""
    directory = Path(directory)
    if not (directory / "config.json").is_file():
        raise FileNotFoundError(f"no config.json in {directory}: not a Hugging Face model directory")
    hf_cfg = Mask2FormerConfig.from_pretrained(str(directory), local_files_only=True)
    cfg = model_config_from_hf(hf_cfg, directory, cfg_overrides)
    check_architecture(hf_cfg, cfg)
    hf = _load_hf(directory)
    model = build_model(cfg)
    report = transfer_hf_state(hf.state_dict(), model)
    model.cfg.recon_trained = False  # g is new: `m2f-ttt prepare` trains it on the user's footage
    logger.info("imported %s: %s", directory, report.summary())
    return model.eval(), report


def load_hf_mask2former(directory: str | Path, cfg_overrides: Mapping[str, Any] | None = None) -> YModel:
    """Load a Hugging Face Mask2Former directory (strictly offline) as a Y-model in eval mode.

    directory: what `Mask2FormerForUniversalSegmentation.save_pretrained` wrote (config.json + weights, optionally
    preprocessor_config.json). cfg_overrides: nested dict merged into the derived ModelConfig, e.g.
    `{"task": "panoptic", "recon": {"variant": "light"}}`.
    f and h come from the checkpoint (patch embedding widened to 4 channels, zero-initialised new channel);
    g is freshly initialised.
    """
    return load_hf_mask2former_with_report(directory, cfg_overrides)[0]
