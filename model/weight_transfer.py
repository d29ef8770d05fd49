"""What both checkpoint converters share: writing source tensors into a Y-model strictly and reporting on it.

`model.convert_detectron2` (detectron2 `.pkl` / `.pth`) and `model.hf_import` (Hugging Face directories) each map
their own key names to Y-model state keys; everything after that mapping lives here:

- `transfer_into_ymodel`: the 3 -> 4 channel patch-embedding surgery, then `fill_ymodel` (every key known, every
  shape equal, every Y-model tensor filled unless `default_left_allowed`), returning a `TransferReport`;
- `merge_overrides` / `deep_merge` / `infer_task`: the ModelConfig a converted checkpoint gets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from model.config import ModelConfig, Task
from model.ymodel import YModel

PATCH_EMBED_KEY = "encoder.backbone.swin.embeddings.patch_embeddings.projection.weight"
# SwinModel's final LayerNorm: SwinBackbone never uses it (it applies `hidden_states_norms.stageN` instead).
UNUSED_ENCODER_PREFIX = "encoder.backbone.swin.layernorm."
RECON_PREFIX = "recon."
# the order tasks are looked for in a checkpoint name ("panoptic" before "instance": panoptic names may say both)
TASK_SEARCH_ORDER: tuple[Task, ...] = ("panoptic", "instance", "semantic")


@dataclass
class TransferReport:
    """What a conversion did with each tensor.

    consumed: source keys copied (possibly transformed) into the Y-model.
    ignored: source keys deliberately dropped (e.g. loss buffers), with no Y-model counterpart.
    filled: Y-model state keys written from the source.
    left: Y-model state keys left at their fresh initialisation (g when the source has none; Swin's unused final norm).
    surgery: True if the patch embedding was widened from 3 to 4 input channels.
    """

    consumed: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    filled: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)
    surgery: bool = False

    def summary(self) -> str:
        groups = sorted({k.split(".")[0] for k in self.left})
        return (
            f"consumed {len(self.consumed)} source tensors, ignored {len(self.ignored)}, filled {len(self.filled)} "
            f"Y-model tensors, left {len(self.left)} at initialisation ({', '.join(groups) or 'none'}), "
            f"patch-embedding surgery: {self.surgery}"
        )


# ----------------------------------------------------------------------------------------------------------------
# Config of a converted checkpoint


def deep_merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `update` merged in, recursing into nested dicts (neither argument is modified)."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def merge_overrides(cfg: ModelConfig, overrides: Mapping[str, Any] | None) -> ModelConfig:
    """Return `cfg` with `overrides` deep-merged (nested dicts for `swin`, `head`, `recon`, `masking`), validated."""
    if not overrides:
        return cfg
    return ModelConfig.model_validate(deep_merge(cfg.model_dump(), overrides))


def infer_task(*names: str) -> Task | None:
    """`panoptic` / `instance` / `semantic` if one of `names` (paths or model ids) mentions it, else None."""
    for name in names:
        low = (name or "").lower()
        for task in TASK_SEARCH_ORDER:
            if task in low:
                return task
    return None


# ----------------------------------------------------------------------------------------------------------------
# Tensors


def expand_patch_embedding(weight: torch.Tensor, in_channels: int = 4) -> torch.Tensor:
    """Widen a patch-embedding conv weight (C, c_in, p, p) to (C, in_channels, p, p).

    The first c_in input channels are copied; the new ones are zero, so the convolution's output is the same for any
    value of the added channels. A weight that already has `in_channels` inputs is returned unchanged.
    """
    if weight.ndim != 4:
        raise ValueError(f"patch-embedding weight must be (C, c_in, p, p), got shape {tuple(weight.shape)}")
    c_in = weight.shape[1]
    if c_in == in_channels:
        return weight
    if c_in > in_channels:
        raise ValueError(f"patch embedding has {c_in} input channels, more than the model's {in_channels}")
    extra = weight.new_zeros(weight.shape[0], in_channels - c_in, *weight.shape[2:])
    return torch.cat([weight, extra], dim=1)


def default_left_allowed(key: str, source_has_recon: bool) -> bool:
    """Y-model keys a conversion may leave at their fresh initialisation."""
    return key.startswith(UNUSED_ENCODER_PREFIX) or (not source_has_recon and key.startswith(RECON_PREFIX))


def fill_ymodel(
    model: YModel, values: Mapping[str, torch.Tensor], left_allowed: Callable[[str], bool]
) -> tuple[list[str], list[str]]:
    """Write `values` (Y-model state keys -> tensors) into `model` strictly; returns (filled keys, left keys).

    Every key must exist with the same shape; keys not written must satisfy `left_allowed`. All problems are
    collected and reported in one ValueError.
    """
    state = model.state_dict()
    unknown = sorted(k for k in values if k not in state)
    bad_shape = sorted(
        f"{k}: source {tuple(v.shape)} vs model {tuple(state[k].shape)}"
        for k, v in values.items()
        if k in state and tuple(v.shape) != tuple(state[k].shape)
    )
    left = sorted(k for k in state if k not in values)
    unfilled = [k for k in left if not left_allowed(k)]
    problems = []
    if unknown:
        problems.append("keys the Y-model does not have:\n    " + "\n    ".join(unknown))
    if bad_shape:
        problems.append("shape mismatches:\n    " + "\n    ".join(bad_shape))
    if unfilled:
        problems.append("Y-model tensors the source does not provide:\n    " + "\n    ".join(unfilled))
    if problems:
        raise ValueError("cannot fill the Y-model:\n  " + "\n  ".join(problems))
    for key, value in values.items():
        state[key] = value.detach().to(dtype=state[key].dtype).clone()
    model.load_state_dict(state, strict=True)
    return sorted(values), left


def transfer_into_ymodel(
    model: YModel,
    values: Mapping[str, torch.Tensor],
    consumed: Iterable[str],
    ignored: Iterable[str],
    source_has_recon: bool,
) -> TransferReport:
    """Fill `model` from `values` (Y-model state key -> source tensor) and report what happened to every tensor.

    The patch embedding is widened to the model's input channels first (`expand_patch_embedding`); `consumed` and
    `ignored` are the source keys the caller mapped and dropped; g may stay fresh only if the source has none.
    """
    values = dict(values)
    report = TransferReport(consumed=list(consumed), ignored=list(ignored))
    if PATCH_EMBED_KEY in values:
        weight = values[PATCH_EMBED_KEY]
        report.surgery = weight.shape[1] != model.cfg.swin.in_channels
        values[PATCH_EMBED_KEY] = expand_patch_embedding(weight, model.cfg.swin.in_channels)
    report.filled, report.left = fill_ymodel(model, values, lambda k: default_left_allowed(k, source_has_recon))
    return report
