"""Convert detectron2 Mask2Former / MaskFormerTTT checkpoints (Swin backbone) into a Y-model.

Two kinds of source are supported:

1. The released TTT-MAE checkpoints (renwang435/video-ttt-release: `ttt_ks_semantic_baseline.pkl`,
   `ttt_coco_panoptic_baseline.pkl`, `ttt_coco_instance_baseline.pkl`): a `MaskFormerTTT` state dict with
   `backbone.*` (detectron2 Swin, 4-channel `patch_embed`), `sem_seg_head.*` (main head h) and `recon_head.*`
   (g: the same pixel decoder + masked-attention decoder, 48 queries, no `class_embed`), plus the loss buffer
   `criterion.empty_weight`.
2. Public detectron2 Mask2Former checkpoints (facebookresearch/Mask2Former model zoo): 3-channel `patch_embed`,
   no `recon_head`. The patch embedding is widened to 4 channels (new channel zero) and g is built from scratch.

Name mapping (detectron2 -> Y-model; the Y-model's modules are transformers' Swin / Mask2Former modules):

- `backbone.patch_embed.proj|norm` -> `encoder.backbone.swin.embeddings.patch_embeddings.projection|norm`
- `backbone.layers.i.blocks.j.{norm1, norm2, attn.proj, attn.relative_position_bias_table, mlp.fc1, mlp.fc2}`
  -> `...swin.encoder.layers.i.blocks.j.{layernorm_before, layernorm_after, attention.o_proj,
  attention.relative_position_bias.relative_position_bias_table, mlp.fc1, mlp.fc2}`;
  `attn.qkv` (3D, D) is split in three along dim 0 into `attention.{q,k,v}_proj`;
  `attn.relative_position_index` (a persistent buffer in detectron2, recomputed in transformers) is checked, not copied
- `backbone.layers.i.downsample.*` (PatchMerging at the end of stages 0..2) -> `...swin.encoder.layers.i.downsample.*`
- `backbone.norm{i}` -> `encoder.backbone.hidden_states_norms.stage{i+1}`
- `<head>.pixel_decoder.{adapter_1, layer_1}.weight|norm` -> `{adapter_1, layer_1}.0.weight|.1`,
  `input_proj.i.j` -> `input_projections.i.j`, `transformer.level_embed` -> `level_embed`,
  `transformer.encoder.layers.l.{self_attn.*, norm1, linear1, linear2, norm2}` ->
  `encoder.layers.l.{self_attn.*, self_attn_layer_norm, fc1, fc2, final_layer_norm}`,
  `mask_features` -> `mask_projection`
- `<head>.predictor.{query_embed, query_feat, level_embed}` -> `transformer.{queries_embedder, queries_features,
  level_embed}`, `transformer_self_attention_layers.i.self_attn.in_proj_*` split into `decoder.layers.i.self_attn.
  {q,k,v}_proj`, `...self_attn.out_proj` -> `self_attn.out_proj`, `.norm` -> `self_attn_layer_norm`,
  `transformer_cross_attention_layers.i.multihead_attn.*` -> `decoder.layers.i.cross_attn.*`, `.norm` ->
  `cross_attn_layer_norm`, `transformer_ffn_layers.i.{linear1, linear2, norm}` -> `decoder.layers.i.{fc1, fc2,
  final_layer_norm}`, `decoder_norm` -> `decoder.layernorm`, `mask_embed.layers.k` ->
  `decoder.mask_predictor.mask_embedder.k.0`, `input_proj.i` -> `transformer.input_projections.i` (only when
  feature_size != hidden_dim), `class_embed` -> `head.class_predictor` (main head only)
- `<head>` is `sem_seg_head` -> `head` and `recon_head` -> `recon.head`.

Every source key must be consumed (or be a known ignorable buffer) and every Y-model tensor must be filled (except
g when the source has none, and Swin's final LayerNorm, which SwinBackbone never uses); otherwise a ValueError lists
the offending keys.
"""

from __future__ import annotations

import logging
import pickle
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.checkpoint import save_checkpoint
from model.config import ModelConfig, preset
from model.recipes import recipe_sizes
from model.recon_decoder import RECON_QUERIES
from model.weight_transfer import TransferReport, deep_merge, infer_task, merge_overrides, transfer_into_ymodel
from model.ymodel import YModel, build_model

logger = logging.getLogger(__name__)

MAIN_HEAD = "sem_seg_head."
RECON_HEAD = "recon_head."
BACKBONE = "backbone."
IGNORABLE_KEYS = ("criterion.empty_weight",)  # SetCriterion's class weights; rebuilt from the loss config
N_LEVELS, N_POINTS = 3, 4  # multi-scale deformable attention: 3 feature levels, 4 sampling points (fixed)

# Globals a detectron2 `.pkl` of numpy arrays may reference; anything else needs `trust_pickle=True`.
_SAFE_GLOBALS = {
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
    ("collections", "OrderedDict"),
}


@dataclass(frozen=True)
class Rule:
    """One Y-model tensor from one detectron2 tensor: `source[part]` of a fused (3D, ...) tensor if part is set."""

    target: str
    source: str
    part: int | None = None


# ----------------------------------------------------------------------------------------------------------------
# Reading the file


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that only builds numpy arrays, dicts and OrderedDicts (a detectron2 `.pkl` needs nothing else)."""

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("numpy.core"):
            module = "numpy._core" + module[len("numpy.core") :]
        if (module, name) not in _SAFE_GLOBALS:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name} from the pickle; pass trust_pickle=True "
                "(`m2f-ttt convert --trust-pickle`) only if you trust the file"
            )
        return super().find_class(module, name)


def _read_file(path: Path, trust_pickle: bool) -> Any:
    if path.suffix in (".pth", ".pt"):
        return torch.load(str(path), map_location="cpu", weights_only=not trust_pickle)
    with path.open("rb") as fh:
        if trust_pickle:
            return pickle.load(fh, encoding="latin1")  # explicitly trusted by the caller
        return _NumpyOnlyUnpickler(fh, encoding="latin1").load()


def _model_dict(obj: Any) -> Mapping[str, Any]:
    """The weights inside a detectron2 container: `{"model": {...}, "__author__": ..., ...}` or a flat dict."""
    if not isinstance(obj, Mapping):
        raise TypeError(f"expected a dict in the checkpoint, got {type(obj).__name__}")
    if isinstance(obj.get("model"), Mapping):
        others = sorted(str(k) for k in obj if k != "model")
        if others:
            logger.info("checkpoint container keys besides 'model' (not used): %s", others)
        return obj["model"]
    if "blobs" in obj:
        raise ValueError("this is a Caffe2/Detectron1 pickle ('blobs'), not a detectron2 Mask2Former checkpoint")
    return obj


def _to_tensor(key: str, value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    raise ValueError(f"checkpoint entry {key!r} is a {type(value).__name__}, not an array")


def _strip_module_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the `module.` prefix that (Distributed)DataParallel adds, if every key has it."""
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module.") :]: v for k, v in state.items()}
    return state


def load_detectron2_state(path: str | Path, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Read a detectron2 checkpoint (`.pkl` of numpy arrays, or `.pth`) -> {detectron2 key: tensor}.

    By default `.pkl` files are read with an unpickler that only builds numpy arrays and dicts, and `.pth` files
    with `torch.load(weights_only=True)`; `trust_pickle=True` lifts that restriction for files you trust.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    raw = _model_dict(_read_file(path, trust_pickle))
    state = {str(k): _to_tensor(str(k), v) for k, v in raw.items()}
    return upgrade_legacy_keys(_strip_module_prefix(state))


def upgrade_legacy_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Apply detectron2 Mask2Former's own version-1 renames when (and only when) the old names are present.

    `<head>.predictor.static_query` -> `query_feat`; `<head>.X` outside `pixel_decoder`/`predictor` ->
    `<head>.pixel_decoder.X` (old MaskFormer heads held the pixel decoder's layers directly).
    """
    out: dict[str, torch.Tensor] = {}
    renamed = []
    for key, value in state.items():
        new = key.replace(".predictor.static_query.", ".predictor.query_feat.")
        for head in (MAIN_HEAD, RECON_HEAD):
            rest = new[len(head) :]
            if new.startswith(head) and not rest.startswith(("pixel_decoder.", "predictor.")):
                new = head + "pixel_decoder." + rest
        if new != key:
            renamed.append(f"{key} -> {new}")
        out[new] = value
    if renamed:
        logger.warning("upgraded %d legacy detectron2 key names, e.g. %s", len(renamed), renamed[0])
    return out


# ----------------------------------------------------------------------------------------------------------------
# Architecture from shapes


def _count(state: Mapping[str, torch.Tensor], pattern: str) -> dict[int, int]:
    """For keys matching `pattern` with groups (outer, inner): {outer: max inner + 1}; one group: {0: max + 1}."""
    found: dict[int, int] = {}
    regex = re.compile(pattern)
    for key in state:
        m = regex.match(key)
        if m:
            outer, inner = (int(m.group(1)), int(m.group(2))) if m.re.groups == 2 else (0, int(m.group(1)))
            found[outer] = max(found.get(outer, 0), inner + 1)
    return found


def _require(state: Mapping[str, torch.Tensor], key: str) -> torch.Tensor:
    if key not in state:
        raise ValueError(f"not a detectron2 Mask2Former (Swin) checkpoint: missing {key!r}")
    return state[key]


def _swin_fields(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    proj = _require(state, BACKBONE + "patch_embed.proj.weight")
    blocks = _count(state, r"^backbone\.layers\.(\d+)\.blocks\.(\d+)\.norm1\.weight$")
    if sorted(blocks) != [0, 1, 2, 3]:
        raise ValueError(f"expected 4 Swin stages in backbone.layers.*, found {sorted(blocks)}")
    tables = [_require(state, f"backbone.layers.{i}.blocks.0.attn.relative_position_bias_table") for i in range(4)]
    side = round(float(np.sqrt(tables[0].shape[0])))
    embed = int(proj.shape[0])
    fc1 = _require(state, "backbone.layers.0.blocks.0.mlp.fc1.weight")
    return {
        "embed_dim": embed,
        "patch_size": int(proj.shape[2]),
        "depths": [blocks[i] for i in range(4)],
        "num_heads": [int(t.shape[1]) for t in tables],
        "window_size": (side + 1) // 2,
        "mlp_ratio": float(fc1.shape[0]) / embed,
        "in_channels": 4,
    }


def _head_fields(state: Mapping[str, torch.Tensor], head: str) -> dict[str, Any]:
    pd, pr = head + "pixel_decoder.", head + "predictor."
    query_feat = _require(state, pr + "query_feat.weight")
    mask_features = _require(state, pd + "mask_features.weight")
    offsets = _require(state, pd + "transformer.encoder.layers.0.self_attn.sampling_offsets.weight")
    enc = _count(state, rf"^{re.escape(pd)}transformer\.encoder\.layers\.(\d+)\.norm1\.weight$").get(0, 0)
    dec = _count(state, rf"^{re.escape(pr)}transformer_self_attention_layers\.(\d+)\.norm\.weight$").get(0, 0)
    return {
        "hidden_dim": int(query_feat.shape[1]),
        "num_queries": int(query_feat.shape[0]),
        "feature_size": int(mask_features.shape[1]),
        "mask_feature_size": int(mask_features.shape[0]),
        "encoder_layers": enc,
        "encoder_feedforward_dim": int(_require(state, pd + "transformer.encoder.layers.0.linear1.weight").shape[0]),
        "decoder_layers": dec + 1,  # transformers counts the prediction on the learnable queries as a layer
        "num_attention_heads": int(offsets.shape[0]) // (N_LEVELS * N_POINTS * 2),
        "dim_feedforward": int(_require(state, pr + "transformer_ffn_layers.0.linear1.weight").shape[0]),
    }


def _check_recon_head(state: Mapping[str, torch.Tensor], main: Mapping[str, Any]) -> None:
    recon = _head_fields(state, RECON_HEAD)
    if recon["num_queries"] != RECON_QUERIES:
        raise ValueError(f"recon_head has {recon['num_queries']} queries, expected {RECON_QUERIES} (= 3*4*4)")
    diffs = {k: (main[k], v) for k, v in recon.items() if k != "num_queries" and main[k] != v}
    if diffs:
        raise ValueError(f"recon_head must have the main head's dimensions; (main, recon) differ: {diffs}")
    if any(k.startswith(RECON_HEAD + "predictor.class_embed.") for k in state):
        raise ValueError("recon_head has a class_embed; the release's reconstruction head has none")


def infer_architecture(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """ModelConfig fields readable from tensor shapes (nested dict: swin, head, recon, and class count `num_classes`).

    The decoder's number of attention heads cannot be read from shapes; transformers uses one value for the
    deformable pixel-decoder attention and the masked-attention decoder, read here from `sampling_offsets`.
    """
    head = _head_fields(state, MAIN_HEAD)
    fields: dict[str, Any] = {"swin": _swin_fields(state), "head": head}
    class_embed = state.get(MAIN_HEAD + "predictor.class_embed.weight")
    fields["num_classes"] = int(class_embed.shape[0]) - 1 if class_embed is not None else None
    if any(k.startswith(RECON_HEAD) for k in state):
        _check_recon_head(state, head)
        fields["recon"] = {"variant": "release"}
    return fields


def config_for_state(
    state: Mapping[str, torch.Tensor],
    base: ModelConfig,
    overrides: Mapping[str, Any] | None = None,
    name: str | None = None,
) -> ModelConfig:
    """`base` (a preset) with the architecture read from `state`, the task guessed from `name`, the inference size of
    the release recipe for the class count (19 -> 1024 / max 2048, 80 or 133 -> 800 / max 1333; other counts keep
    the preset's), then `overrides`."""
    inferred = infer_architecture(state)
    num_classes = inferred.pop("num_classes")
    update: dict[str, Any] = dict(inferred)
    if num_classes is None:
        raise ValueError(f"missing {MAIN_HEAD}predictor.class_embed.weight: the main head needs a class embedding")
    if num_classes != base.num_classes and "class_names" not in (overrides or {}):
        logger.warning(
            "checkpoint has %d classes, preset %r has %d: using placeholder names (set class_names to fix)",
            num_classes, base.name, base.num_classes,
        )  # fmt: skip
    if num_classes != base.num_classes:
        update["class_names"] = [f"class_{i}" for i in range(num_classes)]
        update["thing_class_ids"] = []
    sizes = recipe_sizes(num_classes)  # the authors' inference size for this label set (model/recipes.py)
    if sizes:
        logger.info("%d classes: the release's inference size, short side %d, long side <= %d",
                    num_classes, sizes["image_size"], sizes["max_size"])  # fmt: skip
        update.update(sizes)
    if name:
        update["name"] = name
        task = infer_task(name)
        if task:
            update["task"] = task
    cfg = ModelConfig.model_validate(deep_merge(base.model_dump(), update))
    _log_changes(base, cfg)
    return merge_overrides(cfg, overrides)


def _log_changes(base: ModelConfig, cfg: ModelConfig) -> None:
    for section in ("swin", "head", "recon"):
        old, new = getattr(base, section).model_dump(), getattr(cfg, section).model_dump()
        changed = {k: (old[k], new[k]) for k in new if old[k] != new[k]}
        if changed:
            logger.info("%s from checkpoint shapes (preset -> checkpoint): %s", section, changed)


# ----------------------------------------------------------------------------------------------------------------
# Name mapping


def _pairs(src: str, dst: str, names: Sequence[str] = ("weight", "bias")) -> list[Rule]:
    return [Rule(f"{dst}.{n}", f"{src}.{n}") for n in names]


def _split3(src: str, dst_stem: str, names: Sequence[str]) -> list[Rule]:
    """A fused (3D, ...) q/k/v tensor `src` -> `dst_stem{names[i]}` with part i."""
    return [Rule(dst_stem.format(name), src, part=i) for i, name in enumerate(names)]


def swin_rules(cfg: ModelConfig) -> list[Rule]:
    """Detectron2 `backbone.*` -> `encoder.backbone.*` (qkv split, PatchMerging, per-stage output norms)."""
    dst = "encoder.backbone."
    rules = _pairs("backbone.patch_embed.proj", dst + "swin.embeddings.patch_embeddings.projection")
    rules += _pairs("backbone.patch_embed.norm", dst + "swin.embeddings.norm")
    for i, depth in enumerate(cfg.swin.depths):
        for j in range(depth):
            s, d = f"backbone.layers.{i}.blocks.{j}.", f"{dst}swin.encoder.layers.{i}.blocks.{j}."
            rules += _pairs(s + "norm1", d + "layernorm_before") + _pairs(s + "norm2", d + "layernorm_after")
            rules += [Rule(d + "attention.relative_position_bias.relative_position_bias_table",
                           s + "attn.relative_position_bias_table")]  # fmt: skip
            for n in ("weight", "bias"):
                rules += _split3(s + f"attn.qkv.{n}", d + "attention.{}_proj." + n, ("q", "k", "v"))
            rules += _pairs(s + "attn.proj", d + "attention.o_proj")
            rules += _pairs(s + "mlp.fc1", d + "mlp.fc1") + _pairs(s + "mlp.fc2", d + "mlp.fc2")
        if i < len(cfg.swin.depths) - 1:
            s, d = f"backbone.layers.{i}.downsample.", f"{dst}swin.encoder.layers.{i}.downsample."
            rules += [Rule(d + "reduction.weight", s + "reduction.weight")] + _pairs(s + "norm", d + "norm")
        rules += _pairs(f"backbone.norm{i}", f"{dst}hidden_states_norms.stage{i + 1}")
    return rules


def relative_index_checks(cfg: ModelConfig) -> dict[str, str]:
    """Detectron2 `relative_position_index` buffers -> the Y-model buffer they must equal (flattened)."""
    out = {}
    for i, depth in enumerate(cfg.swin.depths):
        for j in range(depth):
            out[f"backbone.layers.{i}.blocks.{j}.attn.relative_position_index"] = (
                f"encoder.backbone.swin.encoder.layers.{i}.blocks.{j}.attention.relative_position_bias."
                "relative_position_index"
            )
    return out


def pixel_decoder_rules(cfg: ModelConfig, src: str, dst: str) -> list[Rule]:
    """`<head>.pixel_decoder.*` (MSDeformAttnPixelDecoder) -> transformers' Mask2FormerPixelDecoder."""
    rules: list[Rule] = []
    for conv in ("adapter_1", "layer_1"):  # detectron2 Conv2d(bias=False, norm=GN) -> Sequential(Conv2d, GroupNorm)
        rules += [Rule(f"{dst}{conv}.0.weight", f"{src}{conv}.weight")] + _pairs(f"{src}{conv}.norm", f"{dst}{conv}.1")
    for i in range(N_LEVELS):  # ordered from the lowest resolution (res5) up, in both implementations
        for j in range(2):
            rules += _pairs(f"{src}input_proj.{i}.{j}", f"{dst}input_projections.{i}.{j}")
    rules += [Rule(f"{dst}level_embed", f"{src}transformer.level_embed")]
    for layer in range(cfg.head.encoder_layers):
        s, d = f"{src}transformer.encoder.layers.{layer}.", f"{dst}encoder.layers.{layer}."
        for proj in ("sampling_offsets", "attention_weights", "value_proj", "output_proj"):
            rules += _pairs(s + "self_attn." + proj, d + "self_attn." + proj)
        rules += _pairs(s + "norm1", d + "self_attn_layer_norm") + _pairs(s + "norm2", d + "final_layer_norm")
        rules += _pairs(s + "linear1", d + "fc1") + _pairs(s + "linear2", d + "fc2")
    rules += _pairs(f"{src}mask_features", f"{dst}mask_projection")
    return rules


def predictor_rules(cfg: ModelConfig, src: str, dst: str, with_class: bool) -> list[Rule]:
    """`<head>.predictor.*` (MultiScaleMaskedTransformerDecoder) -> Mask2FormerTransformerModule (+ class predictor)."""
    rules = [
        Rule(dst + "queries_embedder.weight", src + "query_embed.weight"),
        Rule(dst + "queries_features.weight", src + "query_feat.weight"),
        Rule(dst + "level_embed.weight", src + "level_embed.weight"),
    ]
    if cfg.head.feature_size != cfg.head.hidden_dim:  # otherwise both implementations use an empty Sequential
        for i in range(N_LEVELS):
            rules += _pairs(f"{src}input_proj.{i}", f"{dst}input_projections.{i}")
    for i in range(cfg.head.decoder_layers - 1):
        d = f"{dst}decoder.layers.{i}."
        sa = f"{src}transformer_self_attention_layers.{i}."
        rules += _split3(sa + "self_attn.in_proj_weight", d + "self_attn.{}_proj.weight", ("q", "k", "v"))
        rules += _split3(sa + "self_attn.in_proj_bias", d + "self_attn.{}_proj.bias", ("q", "k", "v"))
        rules += _pairs(sa + "self_attn.out_proj", d + "self_attn.out_proj")
        rules += _pairs(sa + "norm", d + "self_attn_layer_norm")
        ca = f"{src}transformer_cross_attention_layers.{i}."
        rules += _pairs(ca + "multihead_attn", d + "cross_attn", ("in_proj_weight", "in_proj_bias"))
        rules += _pairs(ca + "multihead_attn.out_proj", d + "cross_attn.out_proj")
        rules += _pairs(ca + "norm", d + "cross_attn_layer_norm")
        ffn = f"{src}transformer_ffn_layers.{i}."
        rules += _pairs(ffn + "linear1", d + "fc1") + _pairs(ffn + "linear2", d + "fc2")
        rules += _pairs(ffn + "norm", d + "final_layer_norm")
    rules += _pairs(src + "decoder_norm", dst + "decoder.layernorm")
    for k in range(3):
        rules += _pairs(f"{src}mask_embed.layers.{k}", f"{dst}decoder.mask_predictor.mask_embedder.{k}.0")
    if with_class:
        rules += _pairs(src + "class_embed", "head.class_predictor")
    return rules


def detectron2_rules(cfg: ModelConfig, with_recon: bool) -> list[Rule]:
    """All rules for f, h and (if the source has `recon_head.*`) g."""
    rules = swin_rules(cfg)
    rules += pixel_decoder_rules(cfg, MAIN_HEAD + "pixel_decoder.", "head.pixel_decoder.")
    rules += predictor_rules(cfg, MAIN_HEAD + "predictor.", "head.transformer.", with_class=True)
    if with_recon:
        rules += pixel_decoder_rules(cfg, RECON_HEAD + "pixel_decoder.", "recon.head.pixel_decoder.")
        rules += predictor_rules(cfg, RECON_HEAD + "predictor.", "recon.head.transformer.", with_class=False)
    return rules


# ----------------------------------------------------------------------------------------------------------------
# Applying the mapping


def _take(tensor: torch.Tensor, rule: Rule) -> torch.Tensor:
    if rule.part is None:
        return tensor
    if tensor.shape[0] % 3:
        raise ValueError(f"{rule.source}: fused q/k/v tensor of shape {tuple(tensor.shape)} is not divisible by 3")
    return tensor.chunk(3, dim=0)[rule.part]


def _check_relative_indices(state: Mapping[str, torch.Tensor], model: YModel, checks: Mapping[str, str]) -> None:
    buffers = dict(model.named_buffers())
    bad = [
        src for src, dst in checks.items()
        if src in state and not torch.equal(state[src].reshape(-1).to(torch.long), buffers[dst].to(torch.long))
    ]  # fmt: skip
    if bad:
        listing = "\n  ".join(bad)
        raise ValueError(f"relative_position_index differs from the window size's (wrong window size?):\n  {listing}")


def _key_problems(state: Mapping[str, torch.Tensor], expected: set[str], optional: set[str]) -> list[str]:
    missing = sorted(expected - set(state))
    unknown = sorted(set(state) - expected - optional)
    problems = []
    if missing:
        problems.append(f"{len(missing)} expected keys are missing:\n    " + "\n    ".join(missing))
    if unknown:
        problems.append(f"{len(unknown)} unknown or leftover keys:\n    " + "\n    ".join(unknown))
    return problems


def apply_rules(state: Mapping[str, torch.Tensor], model: YModel, with_recon: bool) -> TransferReport:
    """Fill `model` from a detectron2 state dict; every key must be used and every needed tensor filled."""
    rules = detectron2_rules(model.cfg, with_recon)
    checks = relative_index_checks(model.cfg)
    expected = {r.source for r in rules} | set(checks)
    problems = _key_problems(state, expected, optional=set(IGNORABLE_KEYS))
    if problems:
        raise ValueError("detectron2 checkpoint does not match the model:\n  " + "\n  ".join(problems))
    _check_relative_indices(state, model, checks)
    values = {rule.target: _take(state[rule.source], rule) for rule in rules}
    consumed = sorted({r.source for r in rules} | set(checks))
    ignored = sorted(k for k in IGNORABLE_KEYS if k in state)
    return transfer_into_ymodel(model, values, consumed, ignored, source_has_recon=with_recon)


def detectron2_to_ymodel(
    state: Mapping[str, torch.Tensor],
    preset_name: str = "swin-s",
    overrides: Mapping[str, Any] | None = None,
    name: str | None = None,
) -> tuple[YModel, TransferReport]:
    """Build a Y-model (eval mode) from a detectron2 state dict; returns it with a report of every tensor.

    The architecture is read from tensor shapes (the preset only supplies what shapes cannot tell: drop-path rate,
    image size, thresholds, ...); `name` (e.g. the file stem) names the model and hints the task; `overrides` is
    a nested dict merged last (e.g. `{"class_names": [...], "thing_class_ids": [...], "task": "panoptic"}`).
    """
    state = upgrade_legacy_keys(state)
    with_recon = any(k.startswith(RECON_HEAD) for k in state)
    cfg = config_for_state(state, preset(preset_name), overrides, name)
    if with_recon and cfg.recon.variant != "release":
        raise ValueError("the checkpoint has a recon_head, which only the 'release' reconstruction variant can hold")
    model = build_model(cfg)
    report = apply_rules(state, model, with_recon)
    model.cfg.recon_trained = with_recon  # the release's recon_head is a trained g; otherwise g is new
    logger.info("converted detectron2 checkpoint: %s", report.summary())
    return model.eval(), report


def convert_detectron2_checkpoint(
    pkl_path: str | Path,
    out_dir: str | Path,
    preset_name: str = "swin-s",
    overrides: Mapping[str, Any] | None = None,
    trust_pickle: bool = False,
) -> Path:
    """Convert a detectron2 checkpoint file and save it with `save_checkpoint`; returns the output directory."""
    pkl_path = Path(pkl_path)
    state = load_detectron2_state(pkl_path, trust_pickle=trust_pickle)
    model, report = detectron2_to_ymodel(state, preset_name, overrides, name=pkl_path.stem)
    extra = {
        "source": pkl_path.name,
        "converted_from": "detectron2",
        "recon_from_checkpoint": not any(k.startswith("recon.") for k in report.left),
        "patch_embed_surgery": report.surgery,
    }
    return save_checkpoint(model, out_dir, extra=extra)
