"""What online TTT costs against plain inference, on this machine, in one run (`m2f-ttt bench`).

Library rows: every row's adapter steps the same frames through `step_frame`, interleaved frame by frame (the
order rotates each frame) so that machine noise hits all rows alike; per row the mean seconds per frame (and the
median), the ratio to `main_only` measured in the same run, and the mean stage split (sampling, TTT forward,
backward, optimizer, predict, post-process, encode). Means, not medians: a row that adapts on every n-th frame
pays for its steps amortized over all frames, which a median would hide; interleaving keeps noise common to all
rows.

Memory rows: the adapter's own estimate next to the measured growth of the process per stream (resident set on
the CPU, allocated bytes on CUDA) after several streams have each taken steps.

The frames are a synthetic `noise` video (a shifted video, so guarded presets adapt as they would in use).
"""

from __future__ import annotations

import gc
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from model.device import synchronize
from model.ymodel import YModel
from mask2former_ttt.outputs.frame import encode_masks, segments_info
from mask2former_ttt.evaluation.protocol import UNGUARDED
from mask2former_ttt.ttt import build_adapter
from mask2former_ttt.ttt.frame_step import step_frame
from mask2former_ttt.ttt.protocol import Adapter

STAGES = ("sample", "ttt_forward", "ttt_backward", "optimizer", "predict", "postprocess", "encode")
MIB = 1024 * 1024


@dataclass(frozen=True)
class BenchRow:
    """A configuration to time: method, preset and config overrides."""

    name: str
    method: str
    preset: str = "default"
    overrides: dict[str, Any] = field(default_factory=dict)


LIBRARY_ROWS = (
    BenchRow("main_only", "main_only"),
    BenchRow("fast", "online", "fast"),
    BenchRow("default", "online", "default"),
    BenchRow("full", "online", "full"),
    BenchRow("release", "online", "release"),
    BenchRow("online_k16", "online", "full", {**UNGUARDED, "window": 16}),
)


@dataclass
class RowTiming:
    """One row's figures: mean s/frame (the amortized cost: a row that steps on every n-th frame pays for its steps
    here, where a median would hide them), the median, the ratio of means to main_only, the mean stage split in ms
    and the steps taken per frame."""

    s_per_frame: float
    median_s_per_frame: float
    ratio: float | None
    stages_ms: dict[str, float]
    steps_per_frame: float
    frames: int


def bench_frames(n: int, size: tuple[int, int] = (128, 160), family: str = "noise") -> list[torch.Tensor]:
    """`n` frames (3, H, W) uint8 of a synthetic shifted video."""
    from mask2former_ttt.data.video import SyntheticVideo, make_video_spec

    video = SyntheticVideo(make_video_spec("bench", "test", family, world_seed=0, n_frames=n, size=size))
    return [torch.from_numpy(f.image).permute(2, 0, 1).contiguous() for f in video]


def _stage_seconds(step: Any, encode_s: float) -> dict[str, float]:
    st = step.stats
    return {
        "sample": st.sample_s,
        "ttt_forward": st.ttt_forward_s,
        "ttt_backward": st.ttt_backward_s,
        "optimizer": st.optimizer_s,
        "predict": st.predict_s,
        "postprocess": st.postprocess_s,
        "encode": encode_s,
    }


def time_rows(
    model: YModel, frames: list[torch.Tensor], rows: tuple[BenchRow, ...] = LIBRARY_ROWS, warmup: int = 2,
    task: str = "panoptic",
) -> dict[str, RowTiming]:
    """Step every row's adapter over `frames`, interleaved; the first `warmup` frames are not counted."""
    adapters: dict[str, Adapter] = {
        r.name: build_adapter(model, r.method, r.preset, seed=0, **r.overrides) for r in rows
    }
    for adapter in adapters.values():
        adapter.timing_sync = True  # the stage split is what this measures
    totals: dict[str, list[float]] = {r.name: [] for r in rows}
    stages: dict[str, dict[str, list[float]]] = {r.name: {s: [] for s in STAGES} for r in rows}
    steps: dict[str, int] = {r.name: 0 for r in rows}
    names = [r.name for r in rows]
    class_names = model.cfg.class_names
    for i, frame in enumerate(frames):
        order = names[i % len(names):] + names[: i % len(names)]
        for name in order:
            t0 = time.perf_counter()
            step = step_frame(adapters[name], frame, task)  # type: ignore[arg-type]
            t1 = time.perf_counter()
            encode_masks(task, step.result, ("png",), segments_info(task, step.result, class_names))
            t2 = time.perf_counter()
            if i < warmup:
                continue
            totals[name].append(t2 - t0)
            steps[name] += step.stats.steps_taken
            for stage, seconds in _stage_seconds(step, t2 - t1).items():
                stages[name][stage].append(seconds)
    base = statistics.fmean(totals["main_only"]) if totals.get("main_only") else None
    out = {}
    for name in names:
        mean = statistics.fmean(totals[name])
        out[name] = RowTiming(
            s_per_frame=round(mean, 5),
            median_s_per_frame=round(statistics.median(totals[name]), 5),
            ratio=round(mean / base, 3) if base else None,
            stages_ms={s: round(1000 * statistics.fmean(v), 3) for s, v in stages[name].items()},
            steps_per_frame=round(steps[name] / len(totals[name]), 3),
            frames=len(totals[name]),
        )
    return out


@dataclass
class CrossStreamTiming:
    """`streams` streams stepping one frame each: one stream after another vs one batched call
    (ttt/cross_stream.py), mean seconds per round of all streams (TTT step + prediction, no post-processing)."""

    streams: int
    preset: str
    serial_s_per_round: float
    batched_s_per_round: float
    speedup: float
    rounds: int


def time_cross_stream(
    model: YModel, frames: list[torch.Tensor], streams: int = 4, preset: str = "default", warmup: int = 2
) -> CrossStreamTiming:
    """Step `streams` adapters of `preset` over `frames` (stream i starts i frames in, so their inputs differ), once
    serially and once through `step_many` / `finish_pending_many`, interleaved round by round; the first `warmup`
    rounds are not counted. Each timed round ends with a device sync."""
    from mask2former_ttt.ttt.cross_stream import finish_pending_many, step_many

    serial = [build_adapter(model, "online", preset, seed=i) for i in range(streams)]
    batched = [build_adapter(model, "online", preset, seed=i) for i in range(streams)]
    times: dict[str, list[float]] = {"serial": [], "batched": []}
    device = next(model.parameters()).device
    for t in range(len(frames)):
        inputs = [frames[(t + i) % len(frames)] for i in range(streams)]
        for kind in (("serial", "batched") if t % 2 == 0 else ("batched", "serial")):
            t0 = time.perf_counter()
            if kind == "serial":
                for adapter, frame in zip(serial, inputs):
                    adapter.step(frame)
                    adapter.finish_pending()
            else:
                step_many(batched, inputs)
                finish_pending_many(batched)
            synchronize(device)
            if t >= warmup:
                times[kind].append(time.perf_counter() - t0)
    serial_s, batched_s = statistics.fmean(times["serial"]), statistics.fmean(times["batched"])
    return CrossStreamTiming(streams, preset, round(serial_s, 5), round(batched_s, 5), round(serial_s / batched_s, 3),
                             len(times["serial"]))


def _process_bytes(device: torch.device) -> int:
    """Resident set size of this process (CPU) or bytes allocated by torch (CUDA). On the CPU, memory the
    allocator holds but nobody uses (freed activations of earlier steps) is returned to the system first, so
    that the figure is what is live."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return int(torch.cuda.memory_allocated(device))
    _malloc_trim()
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * _page_size()


def _malloc_trim() -> None:
    """glibc's malloc_trim(0): give free heap pages back (no-op where glibc is not the allocator)."""
    import ctypes
    import ctypes.util

    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _page_size() -> int:
    import os

    return os.sysconf("SC_PAGE_SIZE")


@dataclass
class MemoryRow:
    """Per-stream memory: the adapter's estimate vs the measured growth per stream."""

    estimate_mb: float
    measured_mb: float
    state_mb: float  # the stream's own tensors as the adapter counts them (memory_bytes) after the steps
    streams: int
    frame: tuple[int, int]

    @property
    def error(self) -> float:
        return self.measured_mb / self.estimate_mb - 1 if self.estimate_mb else float("nan")


def measure_memory(
    model: YModel, preset: str, frames: list[torch.Tensor], streams: int = 4, steps: int = 3, method: str = "online"
) -> MemoryRow:
    """Open `streams` adapters, step each over `steps` frames (then fill their windows to capacity, as in a long
    stream), and compare the growth per stream with the estimate. One warm-up stream runs first (and is dropped) so that allocator pools and lazily built model
    buffers are not counted as per-stream state."""
    device = next(model.parameters()).device
    # the clip's last frames: its shift has ramped up there, so guarded presets take their steps (and build their
    # optimizer state) as a shifted stream does in steady state
    frames = [f.to(device) for f in frames[-steps:]]
    warm = build_adapter(model, method, preset, seed=0)
    for f in frames:
        warm.step(f)
    warm.finish_pending()
    del warm
    gc.collect()
    before = _process_bytes(device)
    adapters = [build_adapter(model, method, preset, seed=i) for i in range(streams)]
    for a in adapters:
        for f in frames:
            a.step(f)
        a.finish_pending()  # a pipelined stream's last step, as the service takes it after sending the result
        window = getattr(a, "window", None)
        while window is not None and window.maxlen and len(window) < window.maxlen:
            window.append(window[-1].clone())  # a long stream's full window, without stepping every frame
    gc.collect()
    after = _process_bytes(device)
    hw = tuple(int(v) for v in adapters[0].window[-1].shape[1:]) if getattr(adapters[0], "window", None) else None
    estimate = adapters[0].estimated_memory_bytes(hw)  # type: ignore[arg-type]
    row = MemoryRow(
        estimate_mb=round(estimate / MIB, 2),
        measured_mb=round((after - before) / streams / MIB, 2),
        state_mb=round(adapters[0].memory_bytes() / MIB, 2),
        streams=streams,
        frame=hw or (0, 0),
    )
    del adapters
    gc.collect()
    return row


def as_json(rows: dict[str, RowTiming], memory: dict[str, MemoryRow], extra: dict[str, Any],
            bench_rows: tuple[BenchRow, ...] = LIBRARY_ROWS) -> dict[str, Any]:
    """The bench JSON: `{"rows": {name: {...}}, "memory": {name: {...}}, ...extra, "configs": {name: {"method",
    "preset", "config"}}, "measured_at": {"commit", "dirty"}}`: what each timed row ran and at which commit."""
    from mask2former_ttt.evaluation.provenance import git_state, method_config

    return {
        "rows": {k: asdict(v) for k, v in rows.items()},
        "memory": {k: {**asdict(v), "error": round(v.error, 4)} for k, v in memory.items()},
        **extra,
        "configs": {r.name: method_config(r.method, r.preset, r.overrides) for r in bench_rows if r.name in rows},
        "measured_at": git_state(),
    }


def write_json(doc: dict[str, Any], path: Path) -> None:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2))
