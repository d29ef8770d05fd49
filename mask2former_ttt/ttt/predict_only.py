"""One image predicted with a stream's current weights, without adapting: `predict_frame`.

`step_frame` adapts to a frame before (or, pipelined, after) predicting it; a single-image prediction must leave the
stream exactly as it was. `predict_frame` runs the adapter's own `predict` (the weights the guard chooses: θ0, the
moving average or the latest; LN Adapt's window statistics) on a fresh θ0 view, so the stream's window, weights,
optimizer, guard, RNG and frame counter are untouched, then post-processes like `step_frame`.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from model.config import Task
from model.device import to_device
from model.postprocess import InstanceFilter
from mask2former_ttt.ttt.frame_step import FrameStep, finish_frame
from mask2former_ttt.ttt.frames import to_working_resolution
from mask2former_ttt.ttt.protocol import Adapter
from mask2former_ttt.ttt.stats import StepResult, StepStats


@torch.no_grad()
def predict_frame(
    adapter: Adapter,
    frame: torch.Tensor,
    task: Task | None,
    out_size: tuple[int, int] | None = None,
    instance_filter: InstanceFilter | None = None,
    tracker: Any = None,
) -> FrameStep:
    """frame: (3, H, W) uint8 RGB -> its `task` result at `out_size` (default (H, W)) from `adapter`'s current
    weights, no step taken (`ttt`: loss None, 0 steps, step scale 0); `task=None`: the logits only. `tracker` as in
    `step_frame` (a fresh `MaskTracker` makes the image's ids and duplicate removal those of a stream's first frame)."""
    model = adapter.model
    device = next(model.parameters()).device
    x = to_working_resolution(to_device(frame, device), model.cfg.image_size, model.cfg.max_size)  # (3, h, w)
    t0 = time.perf_counter()
    class_logits, mask_logits = adapter.predict(x)
    stats = StepStats(frame_index=0, step_scale=0.0, rollbacks=adapter.rollbacks, predict_s=time.perf_counter() - t0)
    logits = StepResult(class_logits, mask_logits, stats, (int(x.shape[1]), int(x.shape[2])))
    return finish_frame(adapter, logits, frame, task, out_size, instance_filter, tracker)
