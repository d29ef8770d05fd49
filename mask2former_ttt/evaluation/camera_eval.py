"""Accuracy at the camera's rate: replay a labelled video as a camera at F frames per second against the cost
model's per-frame costs (`cost_model.py`) on a virtual clock (`camera_rate.py`), and score what a viewer sees.

A served frame is scored with its own prediction. A dropped frame (it arrived while the worker was busy; the
adapter never sees it, so it is not in the window) is scored with the label map delivered last before its arrival;
a frame that arrives before any result has been delivered is not scored (`unscored`; its per-frame mIoU is NaN).
mIoU only: PQ and AP are not computed for camera-rate replays.

The asynchronous schedule's steps are the replay's own: the row's adapter is built on the pipelined schedule (the
same step, left pending after each prediction) and the virtual executor (`camera_rate.StepExecutor`) decides which
steps run and when. A step runs (in replay order) at its start time on the virtual clock, on the window of the
frames delivered by then; the tensors the adapter then predicts with (`prediction_tensors()`) are cloned and
published at the step's finish time. Every prediction runs the adapter's forward on the set published last at or
before its start (θ0 before the first).
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping

import torch

from model.masking import normalize, with_flag
from model.ymodel import YModel
from mask2former_ttt.evaluation.camera_rate import CameraClock, FrameCosts, Schedule, StepExecutor
from mask2former_ttt.evaluation.cost_model import CostModel, bench_row_of
from mask2former_ttt.evaluation.metrics import SemanticMeter
from mask2former_ttt.evaluation.protocol import Row, rows_by_name
from mask2former_ttt.evaluation.video_eval import LabelledFrame, VideoScore
from mask2former_ttt.ttt import build_adapter
from mask2former_ttt.ttt.adapter import StreamAdapter
from mask2former_ttt.ttt.config import ttt_preset
from mask2former_ttt.ttt.frame_step import finish_frame
from mask2former_ttt.ttt.stats import StepResult, StepStats, Theta0View

ASYNC_ROW = "default_async"
CAMERA_ROWS = ("main_task_only", "fast_preset", "default_preset", ASYNC_ROW)
Owed = tuple[StepStats, Theta0View]  # a frame's step: its stats record and θ0's view of the frame
LabelOf = Callable[[StreamAdapter, StepResult, torch.Tensor, tuple[int, int]], torch.Tensor]


def async_row(name: str = ASYNC_ROW, preset: str = "default") -> Row:
    """`preset` on the asynchronous schedule."""
    return Row(name=name, method="online", preset=preset, overrides={"schedule": "async"})


def row_schedule(row: Row) -> Schedule:
    """The schedule a row is replayed on: its resolved configuration's `schedule`."""
    return ttt_preset(row.preset, **row.overrides).schedule


def camera_rows(names: list[str] | None = None) -> list[Row]:
    """The camera-rate table's rows (`CAMERA_ROWS`), or the named ones among the standard rows and `ASYNC_ROW`."""
    names = list(names or CAMERA_ROWS)
    rows = rows_by_name([n for n in names if n != ASYNC_ROW]) if any(n != ASYNC_ROW for n in names) else []
    if ASYNC_ROW in names:
        rows.append(async_row())
    return sorted(rows, key=lambda r: CAMERA_ROWS.index(r.name) if r.name in CAMERA_ROWS else len(CAMERA_ROWS))


@dataclass(frozen=True)
class CameraSpec:
    """A camera replay: frames per second and the cost model; `key` is what a cached score depends on."""

    fps: float
    cost_model: CostModel

    def costs(self, row: Row) -> FrameCosts:
        return self.cost_model.costs(bench_row_of(row))

    def key(self, row: Row) -> dict:
        return {"fps": self.fps, "cost_model": self.cost_model.digest, "schedule": row_schedule(row)}


@dataclass
class Shown:
    """What the viewer sees for the frame at `position` of the replay: its own prediction (`served`), the last
    delivered label map ((H', W') int64 of an earlier frame), or None (nothing delivered yet)."""

    position: int
    label_map: torch.Tensor | None
    served: bool


@dataclass
class ReplayCounts:
    """steps_taken: TTT steps taken; steps_started: frames' steps run (a step the guard shuts takes none);
    steps_skipped: owed steps replaced before they started (`async`); losses: the steps' reported losses."""

    served: int = 0
    steps_taken: int = 0
    steps_started: int = 0
    steps_skipped: int = 0
    losses: list[float] | None = None


@torch.no_grad()
def _predict_with(
    adapter: StreamAdapter, x: torch.Tensor, tensors: Mapping[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """x: (3, h, w) uint8 -> class logits (Q, K+1), mask logits (Q, h/4, w/4) with `tensors` (empty: θ0)."""
    out = adapter.forward(with_flag(normalize(x[None], adapter.model.cfg)), "predict", tensors)
    return out.class_logits[0].float(), out.mask_logits[0].float()


def semantic_label_map(
    adapter: StreamAdapter, result: StepResult, image: torch.Tensor, size: tuple[int, int]
) -> torch.Tensor:
    """The semantic label map (H', W') int64 at `size` of `result`, the prediction for `image` (3, H, W)."""
    return finish_frame(adapter, result, image, "semantic", size).result.label_map  # type: ignore


class _Published:
    """The asynchronous schedule's published weights: what a prediction starting at time t runs with (name ->
    tensor, empty: θ0), the set published last at or before t. Reads come with non-decreasing t."""

    def __init__(self, initial: dict[str, torch.Tensor]) -> None:
        self.current = initial
        self.later: deque[tuple[float, dict[str, torch.Tensor]]] = deque()  # (publish time, tensors), in time order

    def publish(self, at: float, tensors: dict[str, torch.Tensor]) -> None:
        self.later.append((at, tensors))

    def at(self, t: float) -> dict[str, torch.Tensor]:
        while self.later and self.later[0][0] <= t:
            self.current = self.later.popleft()[1]
        return self.current


def _clone(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {n: t.detach().clone() for n, t in tensors.items()}


def replay(
    adapter: StreamAdapter, images: list[torch.Tensor], out_sizes: list[tuple[int, int]], schedule: Schedule,
    fps: float, costs: FrameCosts, counts: ReplayCounts | None = None, label_of: LabelOf = semantic_label_map,
) -> Iterator[Shown]:
    """Feed `images` ((3, H, W) uint8, in replay order) to `adapter` as a camera at `fps` on `schedule`; yield
    what is shown for each (`label_of` a served frame's prediction: label maps at `out_sizes`). `counts` is filled
    as the replay goes. The last frame's step after its delivery (`pipelined`, `async`) is not taken: the stream
    ends with that delivery.

    `adapter` takes a frame's step before its prediction (`sync`: `begin_frame` says it is due) or leaves it
    pending (`take_pending`); the replay runs it after the delivery (`pipelined`), or for `async` hands it to the
    virtual executor: the step runs when it starts on the virtual clock, on the window of the frames delivered by
    then, and predictions use the weights it leaves (a clone of `prediction_tensors()`) from its finish time on."""
    counts = counts if counts is not None else ReplayCounts()
    counts.losses = []
    clock = CameraClock(fps, costs)
    executor: StepExecutor[Owed] = StepExecutor(costs.step_s)
    published = _Published(_clone(adapter.prediction_tensors()))
    labels: dict[int, torch.Tensor] = {}  # delivered label maps that may still be shown

    def run_step(owed: Owed) -> int:
        stats, view = owed
        adapter.adapt(stats, view)
        counts.steps_started += 1
        counts.steps_taken += stats.steps_taken
        if stats.loss is not None:
            counts.losses.append(stats.loss)
        return stats.steps_taken

    def start(owed: Owed, at: float) -> int:  # async: the step on the virtual executor, starting at `at`
        taken = run_step(owed)
        published.publish(at + taken * costs.step_s, _clone(adapter.prediction_tensors()))
        return taken

    last = len(images) - 1
    for pos, image in enumerate(images):
        t = clock.arrival(pos)
        if not clock.accepts(pos):
            shown = clock.shown(t)
            yield Shown(pos, None if shown is None else labels[shown], served=False)
            continue
        if schedule == "async":  # steps that start before this frame is delivered do not see it in the window
            executor.advance(t + costs.predict_s, start, before=True)
        work = adapter.begin_frame(image)
        owed: Owed | None = (work.stats, work.view) if work.due else None
        before = 0
        if owed is not None and schedule != "async":
            before, owed = run_step(owed), None
        if schedule == "async":
            logits = _predict_with(adapter, work.x, published.at(t))
            work.view.predicted = True
        else:
            logits = adapter.predict(work.x, work.view)
        result = adapter.end_frame(work, *logits, 0.0)
        label = label_of(adapter, result, image, out_sizes[pos])
        owed = owed or adapter.take_pending()
        if schedule == "async":
            delivered = clock.serve(pos)
            if owed is not None and pos < last:
                executor.offer(owed, delivered, start)
        else:
            after = run_step(owed) if owed is not None and pos < last else 0
            clock.serve(pos, before, after)
        counts.served += 1
        labels = {p: m for p, m in labels.items() if p >= (clock.shown(t) or 0)}  # older ones are never shown again
        labels[pos] = label
        yield Shown(pos, label, served=True)
    counts.steps_skipped = executor.skipped


def evaluate_at_camera_rate(
    model: YModel, frames: list[LabelledFrame], row: Row, seed: int, video: str, camera: CameraSpec,
    segment: tuple[int, int] | None = None,
) -> VideoScore:
    """`evaluate_video` for a camera at `camera.fps`: mIoU over every frame, served or dropped (the module
    docstring), with the replay's counts in `VideoScore.camera`; `s_per_frame` is this replay's own computing
    time per frame, not the camera's."""
    costs, schedule = camera.costs(row), row_schedule(row)
    # an asynchronous row's steps are the replay's (its virtual executor): the adapter leaves each one pending
    overrides = {**row.overrides, "schedule": "pipelined"} if schedule == "async" else row.overrides
    adapter = build_adapter(model, row.method, row.preset, seed, **overrides)
    if adapter.needs_whole_video or not isinstance(adapter, StreamAdapter):
        raise ValueError(f"row {row.name!r}: camera-rate replays need an online StreamAdapter method, not {row.method}")
    bench_row = bench_row_of(row)
    order = list(range(len(frames)))
    if row.shuffle_frames:
        random.Random(seed).shuffle(order)
    sem_meter = SemanticMeter(model.cfg.num_classes)
    segment_meter = SemanticMeter(model.cfg.num_classes) if segment is not None else None
    per_frame = [math.nan] * len(frames)
    counts = ReplayCounts()
    images = [frames[i].image for i in order]
    sizes = [tuple(frames[i].semantic.shape) for i in order]
    t0 = time.perf_counter()
    for shown in replay(adapter, images, sizes, schedule, camera.fps, costs, counts):  # type: ignore[arg-type]
        i = order[shown.position]
        if shown.label_map is None:
            continue
        per_frame[i] = sem_meter.update(shown.label_map, frames[i].semantic)
        if segment_meter is not None and segment is not None and segment[0] <= i < segment[1]:
            segment_meter.update(shown.label_map, frames[i].semantic)
    seconds = time.perf_counter() - t0
    scored = sum(not math.isnan(v) for v in per_frame)
    return VideoScore(
        video=video, row=row.name, seed=seed,
        miou=sem_meter.compute() if scored else math.nan, pq=None, ap=None,
        s_per_frame=seconds / len(frames),
        per_frame_miou=per_frame,
        mean_loss=sum(counts.losses) / len(counts.losses) if counts.losses else None,
        rollbacks=adapter.rollbacks,
        confusion=sem_meter.confusion() if scored else None,
        segment=list(segment) if segment is not None else None,
        segment_confusion=segment_meter.confusion() if segment_meter is not None else None,
        camera={
            "fps": camera.fps, "schedule": schedule, "cost_model": camera.cost_model.path,
            "cost_model_digest": camera.cost_model.digest, "bench_row": bench_row,
            "predict_s": costs.predict_s, "step_s": costs.step_s,
            "frames": len(frames), "delivered": counts.served, "delivered_fraction": counts.served / len(frames),
            "unscored": len(frames) - scored, "steps_taken": counts.steps_taken,
            "steps_started": counts.steps_started, "steps_skipped": counts.steps_skipped,
        },
    )
