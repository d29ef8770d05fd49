"""Drive any method over a frame sequence: predictions (optionally post-processed) and per-step stats."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Iterable

import torch

from model.postprocess import postprocess
from mask2former_ttt.ttt.stats import StepResult


@dataclass
class FrameOutput:
    """One frame's raw step result and, when a task was given, its post-processed masks."""

    result: StepResult
    masks: Any | None = None


def run_frames(adapter: Any, frames: Iterable[torch.Tensor], task: str | None = None) -> list[FrameOutput]:
    """Step `adapter` over `frames` ((3, H, W) uint8 each, in order). With `task`, post-process every prediction
    to the frame's size and record the time in `stats.postprocess_s`. Offline methods get `prepare` first."""
    frames = list(frames)
    if hasattr(adapter, "prepare"):
        adapter.prepare(frames)
    cfg = adapter.model.cfg
    outputs = []
    for frame in frames:
        result = adapter.step(frame)
        masks = None
        if task is not None:
            t0 = time.perf_counter()
            masks = postprocess(
                result.class_logits, result.mask_logits, task, tuple(frame.shape[1:]), cfg.thing_class_ids,
                cfg.object_mask_threshold, cfg.overlap_threshold,
            )
            result.stats.postprocess_s = time.perf_counter() - t0
        outputs.append(FrameOutput(result, masks))
    return outputs
