"""Offline segmentation of one video with online TTT: `m2f-ttt segment VIDEO -o OUT/`.

The input is a video file, an RTSP URL (`rtsp://` / `rtsps://`) or a camera device (`/dev/video0`, read with
FFmpeg's `v4l2` input); any other FFmpeg input works with an explicit `input_format` (e.g. `lavfi`). Inputs are
opened by `mask2former_ttt.live.sources`: live network streams use the service's reconnecting reader, so a
camera that drops is reconnected (bounded; then a `VideoError` says so). Every frame
goes through one `adapter.step` (the model keeps learning on this video) and `model.postprocess`; the results
are written by `VideoResultWriter` (see `mask2former_ttt.outputs.writer` for the layout):

- `overlay.mp4`: H.264 overlay, one frame per input frame, at the input's frame rate;
- `results.jsonl`: one line per frame (frame index, pts, segments_info, TTT loss, per-stage timings in ms);
- task panoptic: `panoptic/NNNNNN.png` (COCO-panoptic RGB ids) and `panoptic.json` (COCO-panoptic document);
  task semantic: `semantic/NNNNNN.png` label maps; task instance: RLEs in `results.jsonl`;
- `run.json`: what was run (source, model, method, preset, task, frames, fps, time).

Nothing here imports the service (`server/`).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm import tqdm

from model.checkpoint import bundled_model_dir, load_checkpoint
from model.config import TASKS
from model.device import resolve_device
from model.postprocess import DEFAULT_MIN_AREA, DEFAULT_SCORE_THRESHOLD, InstanceFilter
from mask2former_ttt.outputs.legend_strip import check_legend_mode
from mask2former_ttt.outputs.ttt_view import TTT_VIEW_MP4, TTTViewWriter
from mask2former_ttt.outputs.writer import VideoResultWriter, check_jsonl_encodings
from mask2former_ttt.tracking import MaskTracker
from mask2former_ttt.ttt import METHODS, build_adapter
from mask2former_ttt.ttt.frame_step import step_frame
from mask2former_ttt.ttt.view import reconstruction_view
from mask2former_ttt.ttt.config import TTT_PRESETS
from mask2former_ttt.readiness import default_method, readiness
from mask2former_ttt.live.sources import SourceInfo, open_source, source_kind  # noqa: F401  (SourceInfo re-exported)
from mask2former_ttt.video_io import VideoError, fps_fraction, iter_frames

logger = logging.getLogger(__name__)

RUN_JSON = "run.json"


class SegmentError(ValueError):
    """A problem with the arguments or the model (the message says what to change)."""


@dataclass
class SegmentSummary:
    """Outcome of `segment_video`."""

    source: str
    kind: str
    out_dir: str
    task: str
    method: str
    preset: str
    model: str
    device: str
    frames: int
    seconds: float
    fps: float
    interrupted: bool = False
    files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_choices(task: str, method: str, preset: str) -> None:
    if task not in TASKS:
        raise SegmentError(f"unknown task {task!r}; choose one of {list(TASKS)}")
    if method is not None and method not in METHODS:
        raise SegmentError(f"unknown TTT method {method!r}; choose one of {sorted(METHODS)}")
    if preset not in TTT_PRESETS:
        raise SegmentError(f"unknown TTT preset {preset!r}; choose one of {sorted(TTT_PRESETS)}")


def _load_model(model_dir: Path, device: torch.device) -> Any:
    if not (model_dir / "config.json").is_file():
        hint = " (the bundled model is not installed)" if model_dir == bundled_model_dir() else ""
        raise SegmentError(f"no model checkpoint at {model_dir}{hint}: pass --model DIR with config.json + "
                           "model.safetensors (see `m2f-ttt convert` / `m2f-ttt train`)")
    try:
        return load_checkpoint(model_dir, device)
    except (FileNotFoundError, RuntimeError, ValueError) as exc:
        raise SegmentError(f"cannot load the model from {model_dir}: {exc}") from exc


def _to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) uint8 (a view, no copy)."""
    return torch.from_numpy(rgb).permute(2, 0, 1)


def segment_video(
    source: str | Path,
    out_dir: str | Path,
    *,
    task: str = "panoptic",
    method: str | None = None,
    preset: str = "default",
    device: str = "auto",
    model_dir: str | Path | None = None,
    max_frames: int | None = None,
    max_width: int | None = None,
    input_format: str | None = None,
    seed: int = 0,
    progress: bool = True,
    score_threshold: float | None = None,
    min_area: int | None = None,
    ttt_view: bool = False,
    legend: str = "auto",
    labels: bool = True,
    encodings: Sequence[str] = (),
) -> SegmentSummary:
    """Segment every frame of `source` while adapting to it; write the results to `out_dir`.

    Raises `VideoError` for unusable inputs and `SegmentError` for bad options or a missing model. Ctrl-C stops
    cleanly: the files written so far are finished (the MP4 stays playable) and `interrupted` is set.
    Instances / panoptic segments scoring below `score_threshold` or smaller than `min_area` pixels are dropped
    (None: `DEFAULT_SCORE_THRESHOLD` / `DEFAULT_MIN_AREA` of `model.postprocess`). `ttt_view` also writes
    `ttt_view.mp4`: masked input, reconstruction and ℓ_s curve per frame (one extra no-grad forward per frame).
    `legend` (auto | always | never) and `labels` style `overlay.mp4` (`mask2former_ttt.outputs.overlay.overlay`).
    `encodings` (`rle`, `polygons`) are added to every results.jsonl record (`outputs.writer.JSONL_ENCODINGS`).
    """
    source = str(source)
    _check_choices(task, method, preset)
    if max_frames is not None and max_frames < 1:
        raise SegmentError("max_frames must be at least 1")
    try:
        check_legend_mode(legend)
        encodings = check_jsonl_encodings(encodings)
    except ValueError as exc:
        raise SegmentError(str(exc)) from None
    try:
        keep = InstanceFilter(
            DEFAULT_SCORE_THRESHOLD if score_threshold is None else score_threshold,
            DEFAULT_MIN_AREA if min_area is None else min_area,
        )
    except ValueError as exc:
        raise SegmentError(str(exc)) from None
    try:
        dev = resolve_device(device)
    except RuntimeError as exc:  # cuda asked for but absent
        raise SegmentError(str(exc)) from None
    model_path = Path(model_dir) if model_dir is not None else bundled_model_dir()
    is_file = source_kind(source, input_format) == "file"
    # files are probed before the model loads (fast, clear errors); live sources are opened once all else is ready
    opened = open_source(source, input_format, max_width, max_frames) if is_file else None
    model = _load_model(model_path, dev)
    cfg = model.cfg
    method, warning = default_method(cfg, method)
    if warning:
        logger.warning(warning)
    adapter = build_adapter(model, method, preset, seed)
    if adapter.needs_whole_video:  # offline baselines train on the whole video before predicting
        if not is_file:
            raise SegmentError(f"method {method!r} needs the whole video first; it cannot run on a live source")
        adapter.prepare([_to_tensor(f.rgb) for f in iter_frames(source, max_width=max_width, max_frames=max_frames)])
    info, frames = opened or open_source(source, input_format, max_width, max_frames)
    fps: Fraction = fps_fraction(info.fps)
    logger.info("segmenting source=%s kind=%s frames=%s fps=%.3f task=%s method=%s preset=%s model=%s device=%s "
                "(%s)", info.source, info.kind, info.frames, float(fps), task, method, preset, model_path, dev,
                readiness(cfg))
    out = Path(out_dir)
    writer = VideoResultWriter(out, task, cfg.class_names, cfg.thing_class_ids, fps=fps, class_colors=cfg.class_colors,
                               legend=legend, labels=labels, encodings=encodings)
    views = TTTViewWriter(out / TTT_VIEW_MP4, fps=fps) if ttt_view else None
    bar = tqdm(total=info.frames, unit="frame", desc="segment", dynamic_ncols=True, disable=not progress)
    done, interrupted, t_start = 0, False, time.perf_counter()
    tracker = MaskTracker()  # instance / panoptic ids that persist across the video's frames
    try:
        t_decode = time.perf_counter()
        for frame in frames:
            decoded = time.perf_counter()
            tensor = _to_tensor(frame.rgb)
            step = step_frame(adapter, tensor, task, instance_filter=keep, tracker=tracker)
            if views is not None:
                views.write(reconstruction_view(adapter, tensor), step.stats.loss)
            step.timings_s = {"decode": decoded - t_decode, **step.timings_s}
            record = writer.write(frame.index, frame.rgb, step.result, frame.pts_s, extra=step.record())
            done += 1
            bar.update(1)
            if step.stats.loss is not None:
                bar.set_postfix(loss=f"{step.stats.loss:.4f}", segments=len(record["segments_info"]), refresh=False)
            t_decode = time.perf_counter()
    except KeyboardInterrupt:
        interrupted = True
        logger.warning("interrupted after %d frames; finishing the output files", done)
    finally:
        bar.close()
        close = getattr(frames, "close", None)  # a live reader's connection; a file iterator's decoder
        if callable(close):
            close()
        files = writer.close()
        if views is not None:
            views.close()
            files.append(TTT_VIEW_MP4)
    seconds = time.perf_counter() - t_start
    summary = SegmentSummary(
        source=info.source, kind=info.kind, out_dir=str(out), task=task, method=method, preset=preset,
        model=str(model_path), device=str(dev), frames=done, seconds=round(seconds, 3),
        fps=round(done / seconds, 3) if seconds > 0 else 0.0, interrupted=interrupted, files=files + [RUN_JSON],
    )
    run = {**summary.to_dict(), "input": asdict(info), "output_fps": float(fps)}
    (out / RUN_JSON).write_text(json.dumps(run, indent=2))
    if done == 0 and not interrupted:
        raise VideoError("empty", f"no frame could be read from {info.source}")
    logger.info("done frames=%d seconds=%.1f fps=%.2f out=%s", done, seconds, summary.fps, out)
    return summary
