"""Run one method over one labelled video and score it (mIoU, PQ, AP, per-frame curve, seconds per frame)."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

import torch

from model.postprocess import instance_inference, panoptic_inference
from model.ymodel import YModel
from mask2former_ttt.evaluation.metrics import InstanceMeter, PanopticMeter, SemanticMeter
from mask2former_ttt.evaluation.protocol import Row
from mask2former_ttt.ttt import build_adapter
from mask2former_ttt.ttt.frame_step import step_frame


@dataclass
class LabelledFrame:
    """image: (3, H, W) uint8; semantic: (H, W) int64 (255 ignore); instance: (H, W) int64 (0 = none)."""

    image: torch.Tensor
    semantic: torch.Tensor
    instance: torch.Tensor


@dataclass
class VideoScore:
    video: str
    row: str
    seed: int
    miou: float
    pq: float | None
    ap: float | None
    s_per_frame: float
    per_frame_miou: list[float] = field(default_factory=list)
    mean_loss: float | None = None
    rollbacks: int = 0
    per_frame_shift_score: list[float | None] = field(default_factory=list)  # the guard's score (None: gate off)
    per_frame_confidence_score: list[float | None] = field(default_factory=list)  # the confidence gate's (None: off)
    per_frame_step_scale: list[float] = field(default_factory=list)  # the guard's step multiplier (1.0: gate off)
    confusion: list[list[int]] | None = None  # (K, K) pixel counts, label x prediction (metrics.pooled_miou)
    segment: list[int] | None = None  # [start, stop) of the frames `segment_confusion` covers (a final clean segment)
    segment_confusion: list[list[int]] | None = None  # (K, K) pixel counts over those frames only
    camera: dict | None = None  # a camera-rate replay's fps, schedule, costs and counts (camera_eval.py)


def evaluate_video(
    model: YModel, frames: list[LabelledFrame], row: Row, seed: int, video: str, panoptic: bool = True, instance: bool = True,
    segment: tuple[int, int] | None = None,
) -> VideoScore:
    """Stream `frames` through `row`'s adapter in order (or shuffled for the control) and score each prediction.
    `segment` ((start, stop) frame indices, e.g. a return video's final clean stretch) also gets its own confusion
    matrix, for a pooled figure over those frames."""
    adapter = build_adapter(model, row.method, row.preset, seed, **row.overrides)
    order = list(range(len(frames)))
    if row.shuffle_frames:
        random.Random(seed).shuffle(order)
    things = model.cfg.thing_class_ids
    sem_meter = SemanticMeter(model.cfg.num_classes)
    segment_meter = SemanticMeter(model.cfg.num_classes) if segment is not None else None
    pan_meter = PanopticMeter(model.cfg.num_classes, things) if panoptic else None
    ins_meter = InstanceMeter(things) if instance and things else None
    per_frame = [0.0] * len(frames)
    shift_scores: list[float | None] = [None] * len(frames)
    confidence_scores: list[float | None] = [None] * len(frames)
    step_scales = [1.0] * len(frames)
    losses: list[float] = []
    step_time = 0.0
    if adapter.needs_whole_video:  # offline: training on the whole video counts towards its time
        t0 = time.perf_counter()
        adapter.prepare([f.image for f in frames])
        step_time += time.perf_counter() - t0
    for i in order:
        f = frames[i]
        t0 = time.perf_counter()
        size = tuple(f.semantic.shape)
        step = step_frame(adapter, f.image, "semantic", size)
        step_time += time.perf_counter() - t0
        res = step.logits
        per_frame[i] = sem_meter.update(step.result.label_map, f.semantic)
        if segment_meter is not None and segment[0] <= i < segment[1]:
            segment_meter.update(step.result.label_map, f.semantic)
        shift_scores[i], step_scales[i] = res.stats.shift_score, res.stats.step_scale
        confidence_scores[i] = res.stats.confidence_score
        if res.stats.loss is not None:
            losses.append(res.stats.loss)
        if pan_meter is not None:
            pan = panoptic_inference(res.class_logits, res.mask_logits, size, things, model.cfg.object_mask_threshold, model.cfg.overlap_threshold)
            pan_meter.update(pan.id_map, pan.segments_info, f.semantic, f.instance)
        if ins_meter is not None:
            ins = instance_inference(res.class_logits, res.mask_logits, size, thing_class_ids=things)
            ins_meter.update(ins.classes, ins.scores, ins.masks, f.semantic, f.instance)
    return VideoScore(
        video=video,
        row=row.name,
        seed=seed,
        miou=sem_meter.compute(),
        pq=pan_meter.compute() if pan_meter else None,
        ap=ins_meter.compute() if ins_meter else None,
        s_per_frame=step_time / len(frames),  # adaptation + prediction + semantic post-processing
        per_frame_miou=per_frame,
        mean_loss=sum(losses) / len(losses) if losses else None,
        rollbacks=adapter.rollbacks,
        per_frame_shift_score=shift_scores,
        per_frame_confidence_score=confidence_scores,
        per_frame_step_scale=step_scales,
        confusion=sem_meter.confusion(),
        segment=list(segment) if segment is not None else None,
        segment_confusion=segment_meter.confusion() if segment_meter is not None else None,
    )
