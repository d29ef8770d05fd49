"""What the safe-adaptation guard's optional detectors (the feature and confidence gates) share: whether one can run
on a checkpoint (it needs the pixel gate on and its own reference in the checkpoint's config), and the unit their
scores are in, the training images' own tail: 0 = the median training image, 1 = the 99.5 % most atypical."""

from __future__ import annotations

import logging

import torch

from model.config import ModelConfig
from mask2former_ttt.ttt.config import TTTConfig

log = logging.getLogger(__name__)
_WARNED: set[tuple[str, str]] = set()

TAIL = 0.005  # the scores' unit: the training images' 99.5 % quantile


def tail_reference(values: torch.Tensor) -> tuple[float, float]:
    """values: (N,) a statistic over the training images -> its median and its 1 − `TAIL` quantile."""
    q = torch.quantile(values, torch.tensor([0.5, 1.0 - TAIL], dtype=values.dtype))
    return float(q[0]), float(q[1])


def in_tail_units(value: float, median: float, q_high: float) -> float:
    """`value` of a statistic in units of the training images' tail: (value − median) / (q_high − median)."""
    return (value - median) / max(q_high - median, 1e-9)


def gate_in_use(
    model_cfg: ModelConfig, cfg: TTTConfig, gate: tuple[float, float] | None, reference_field: str, gate_name: str
) -> tuple[float, float] | None:
    """`gate` (a (low, high) field of `cfg`) when it can run on this checkpoint, else None. Like the pixel gate
    without `input_stats_reference`, a checkpoint calibrated before the detector existed keeps serving without it;
    the warning (once per checkpoint name and reference) says how to turn it on."""
    if gate is None or cfg.shift_gate is None or model_cfg.input_stats_reference is None:
        return None
    if getattr(model_cfg, reference_field) is None:
        if (model_cfg.name, reference_field) not in _WARNED:
            _WARNED.add((model_cfg.name, reference_field))
            log.warning("%s: no %s, so the %s is off; turn it on with `m2f-ttt calibrate --model-dir DIR --data-root "
                        "TRAIN_DATA`", model_cfg.name, reference_field, gate_name)
        return None
    return gate
