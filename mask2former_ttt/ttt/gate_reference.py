"""Whether one of the safe-adaptation guard's optional detectors (the feature and confidence gates) can run on a
checkpoint: each needs the pixel gate on and its own reference statistics in the checkpoint's config."""

from __future__ import annotations

import logging

from model.config import ModelConfig
from mask2former_ttt.ttt.config import TTTConfig

log = logging.getLogger(__name__)
_WARNED: set[tuple[str, str]] = set()


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
