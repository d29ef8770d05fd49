"""One frame through an adapter: TTT step -> prediction -> post-processing -> a result record with timings.

`step_frame` is the only place that does this; the service's device worker, `m2f-ttt segment`, `m2f-ttt
evaluate` and upload jobs all call it, so every path writes the same per-frame fields (`FrameStep.record`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from model.config import Task
from model.postprocess import InstanceFilter, InstanceResult, PanopticResult, SemanticResult, postprocess
from mask2former_ttt.ttt.protocol import Adapter
from mask2former_ttt.ttt.stats import StepResult, StepStats

SegmentationResult = SemanticResult | InstanceResult | PanopticResult


@dataclass
class FrameStep:
    """One frame's outcome.

    logits: the adapter's raw prediction (class logits (Q, K+1), mask logits (Q, h/4, w/4));
    result: the post-processed result at `out_size` with CPU tensors (None when no task was asked);
    timings_s: `ttt` (sampling + forward + backward + optimizer), `predict`, `postprocess`, plus what callers add
    (`queue`, `decode`, ...).
    """

    logits: StepResult
    result: SegmentationResult | None
    timings_s: dict[str, float] = field(default_factory=dict)

    @property
    def stats(self) -> StepStats:
        return self.logits.stats

    def ttt_record(self) -> dict[str, Any]:
        """The adaptation fields of the results layout (JSON-ready: a non-finite loss becomes None)."""
        st = self.stats
        loss = st.loss if st.loss is not None and math.isfinite(st.loss) else None
        return {
            "loss": loss,
            "steps_taken": st.steps_taken,
            "rolled_back": st.rolled_back,
            "rollbacks": st.rollbacks,
            "reset": st.reset,
            "shift_score": st.shift_score,
            "confidence_score": st.confidence_score,
            "step_scale": st.step_scale,
            "steps_skipped": st.steps_skipped,
            "step_errors": st.step_errors,
        }

    def record(self) -> dict[str, Any]:
        """Per-frame fields every results writer stores: `ttt` (see `ttt_record`) and `timings_ms`."""
        return {"ttt": self.ttt_record(), "timings_ms": {k: round(v * 1000, 3) for k, v in self.timings_s.items()}}


def _to_cpu(result: SegmentationResult) -> SegmentationResult:
    """The result with its tensors on the CPU (encoders and meters work in numpy / on the CPU)."""
    moved = {f.name: getattr(result, f.name) for f in dataclasses.fields(result)}
    return dataclasses.replace(result, **{k: v.cpu() for k, v in moved.items() if torch.is_tensor(v)})


def step_frame(
    adapter: Adapter,
    frame: torch.Tensor,
    task: Task | None,
    out_size: tuple[int, int] | None = None,
    instance_filter: InstanceFilter | None = None,
    tracker: Any = None,
) -> FrameStep:
    """Adapt to `frame` ((3, H, W) uint8 RGB), predict it and post-process the prediction for `task` at
    `out_size` (default: the frame's (H, W)), keeping the instances / panoptic segments `instance_filter` passes
    (default: all). `tracker` (a per-stream `mask2former_ttt.tracking.MaskTracker`) replaces per-frame instance
    and panoptic ids by ids that persist over the stream. With `task=None` only the logits are returned (callers
    that score several tasks from one prediction)."""
    return finish_frame(adapter, adapter.step(frame), frame, task, out_size, instance_filter, tracker)


def finish_frame(
    adapter: Adapter,
    logits: StepResult,
    frame: torch.Tensor,
    task: Task | None,
    out_size: tuple[int, int] | None = None,
    instance_filter: InstanceFilter | None = None,
    tracker: Any = None,
) -> FrameStep:
    """`step_frame` after the adapter's step: `logits` (its StepResult for `frame`) post-processed as
    `step_frame` describes. Batched callers (ttt/cross_stream.py) step several adapters at once, then call this per
    stream."""
    st = logits.stats
    timings = {"ttt": st.sample_s + st.ttt_forward_s + st.ttt_backward_s + st.optimizer_s, "predict": st.predict_s}
    result = None
    if task is not None:
        cfg = adapter.model.cfg
        keep = instance_filter or InstanceFilter()
        t0 = time.perf_counter()
        result = postprocess(
            logits.class_logits,
            logits.mask_logits,
            task,
            out_size=out_size or (int(frame.shape[1]), int(frame.shape[2])),
            thing_class_ids=cfg.thing_class_ids,
            object_mask_threshold=cfg.object_mask_threshold,
            overlap_threshold=cfg.overlap_threshold,
            score_threshold=keep.score_threshold,
            min_area=keep.min_area,
        )
        result = _to_cpu(result)
        if tracker is not None:
            result = tracker.apply(result)
        st.postprocess_s = time.perf_counter() - t0
        timings["postprocess"] = st.postprocess_s
    return FrameStep(logits, result, timings)
