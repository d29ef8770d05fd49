"""Offline segmentation of one video with online TTT: `m2f-ttt segment VIDEO -o OUT/`.

The input is a video file, an RTSP URL (`rtsp://` / `rtsps://`) or a camera device (`/dev/video0`, read with
FFmpeg's `v4l2` input); any other FFmpeg input works with an explicit `input_format` (e.g. `lavfi`). Every frame
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
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
from tqdm import tqdm

from model.checkpoint import bundled_model_dir, load_checkpoint
from model.device import resolve_device
from model.postprocess import postprocess
from mask2former_ttt.outputs.writer import VideoResultWriter
from mask2former_ttt.ttt import METHODS, build_adapter
from mask2former_ttt.ttt.config import TTT_PRESETS
from mask2former_ttt.video_io import VideoError, VideoFrame, decode_rgb, fps_fraction, iter_frames, probe, redact_url

logger = logging.getLogger(__name__)

TASKS = ("semantic", "instance", "panoptic")
LIVE_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")
RUN_JSON = "run.json"
OPEN_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 10.0


class SegmentError(ValueError):
    """A problem with the arguments or the model (the message says what to change)."""


@dataclass
class SourceInfo:
    """What is known about the input before decoding: kind (`file` | `stream` | `device`), frame rate, frames."""

    source: str
    kind: str
    fps: float | None
    frames: int | None
    width: int | None = None
    height: int | None = None
    codec: str | None = None


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


def source_kind(source: str, input_format: str | None = None) -> str:
    """`device` for /dev/video* or a v4l2 input, `stream` for URLs and explicit FFmpeg formats, else `file`."""
    if source.startswith("/dev/video") or input_format in ("v4l2", "video4linux2"):
        return "device"
    if source.lower().startswith(LIVE_SCHEMES) or input_format:
        return "stream"
    return "file"


def _live_format(source: str, kind: str, input_format: str | None) -> str | None:
    if input_format:
        return input_format
    return "v4l2" if kind == "device" else None


def _live_options(source: str) -> dict[str, str]:
    if source.lower().startswith(("rtsp://", "rtsps://")):
        return {"rtsp_transport": "tcp"}
    return {}


def open_live(source: str, input_format: str | None = None) -> tuple[av.container.InputContainer, SourceInfo]:
    """Open an RTSP URL, a camera device or another FFmpeg input; `VideoError("unavailable", ...)` on failure."""
    kind = source_kind(source, input_format)
    fmt = _live_format(source, kind, input_format)
    if kind == "device" and not Path(source).exists():
        raise VideoError("not_found", f"no such camera device: {source}")
    try:
        container = av.open(source, mode="r", format=fmt, options=_live_options(source),
                            timeout=(OPEN_TIMEOUT_S, READ_TIMEOUT_S))
    except av.FFmpegError as exc:
        what = {"device": "camera device", "stream": "stream"}[kind]
        reason = getattr(exc, "strerror", None) or str(exc)
        raise VideoError("unavailable", f"cannot open {what} {redact_url(source)}"
                                        f"{f' (format {fmt})' if fmt else ''}: {reason}") from exc
    if not container.streams.video:
        container.close()
        raise VideoError("no_video_stream", f"{redact_url(source)} has no video stream")
    stream = container.streams.video[0]
    rate = stream.average_rate or stream.guessed_rate
    ctx = stream.codec_context
    info = SourceInfo(redact_url(source), kind, float(rate) if rate else None, None,
                      int(ctx.width or 0) or None, int(ctx.height or 0) or None, ctx.name if ctx else None)
    return container, info


def iter_live_frames(container: av.container.InputContainer, max_width: int | None = None,
                     max_frames: int | None = None) -> Iterator[VideoFrame]:
    """Decode a live container's first video stream as RGB frames (H, W, 3) uint8; closes the container."""
    index = 0
    try:
        for frame in decode_rgb(container, max_width, max_frames):
            index = frame.index + 1
            yield frame
    except av.FFmpegError as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise VideoError("unavailable", f"reading the stream failed after {index} frames: {reason}") from exc
    finally:
        container.close()


def open_source(source: str, input_format: str | None = None, max_width: int | None = None,
                max_frames: int | None = None) -> tuple[SourceInfo, Iterator[VideoFrame]]:
    """(what the input is, an iterator over its frames). Files are probed first so problems surface early."""
    kind = source_kind(source, input_format)
    if kind == "file":
        info = probe(source)  # VideoError: not_found | not_video | no_video_stream | corrupt | empty
        frames = info.frames if max_frames is None else min(info.frames, max_frames)
        src = SourceInfo(source, "file", info.fps, frames, info.width, info.height, info.codec)
        return src, iter_frames(source, max_width=max_width, max_frames=max_frames)
    container, src = open_live(source, input_format)
    src.frames = max_frames
    return src, iter_live_frames(container, max_width=max_width, max_frames=max_frames)


def _check_choices(task: str, method: str, preset: str) -> None:
    if task not in TASKS:
        raise SegmentError(f"unknown task {task!r}; choose one of {list(TASKS)}")
    if method not in METHODS:
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
    method: str = "online",
    preset: str = "default",
    device: str = "auto",
    model_dir: str | Path | None = None,
    max_frames: int | None = None,
    max_width: int | None = None,
    input_format: str | None = None,
    seed: int = 0,
    progress: bool = True,
) -> SegmentSummary:
    """Segment every frame of `source` while adapting to it; write the results to `out_dir`.

    Raises `VideoError` for unusable inputs and `SegmentError` for bad options or a missing model. Ctrl-C stops
    cleanly: the files written so far are finished (the MP4 stays playable) and `interrupted` is set.
    """
    source = str(source)
    _check_choices(task, method, preset)
    if max_frames is not None and max_frames < 1:
        raise SegmentError("max_frames must be at least 1")
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
    adapter = build_adapter(model, method, preset, seed)
    if hasattr(adapter, "prepare"):  # offline baselines train on the whole video before predicting
        if not is_file:
            raise SegmentError(f"method {method!r} needs the whole video first; it cannot run on a live source")
        adapter.prepare([_to_tensor(f.rgb) for f in iter_frames(source, max_width=max_width, max_frames=max_frames)])
    info, frames = opened or open_source(source, input_format, max_width, max_frames)
    fps: Fraction = fps_fraction(info.fps)
    logger.info("segmenting source=%s kind=%s frames=%s fps=%.3f task=%s method=%s preset=%s model=%s device=%s",
                info.source, info.kind, info.frames, float(fps), task, method, preset, model_path, dev)
    out = Path(out_dir)
    writer = VideoResultWriter(out, task, cfg.class_names, cfg.thing_class_ids, fps=fps)
    bar = tqdm(total=info.frames, unit="frame", desc="segment", dynamic_ncols=True, disable=not progress)
    done, interrupted, t_start = 0, False, time.perf_counter()
    try:
        t_decode = time.perf_counter()
        for frame in frames:
            t0 = time.perf_counter()
            res = adapter.step(_to_tensor(frame.rgb))
            st = res.stats
            t1 = time.perf_counter()
            result = postprocess(res.class_logits, res.mask_logits, task, out_size=frame.rgb.shape[:2],
                                 thing_class_ids=cfg.thing_class_ids, object_mask_threshold=cfg.object_mask_threshold,
                                 overlap_threshold=cfg.overlap_threshold)
            t2 = time.perf_counter()
            timings = {"decode": t0 - t_decode, "ttt": st.ttt_forward_s + st.ttt_backward_s + st.optimizer_s,
                       "predict": st.predict_s, "step": t1 - t0, "postprocess": t2 - t1}
            record = writer.write(frame.index, frame.rgb, result, frame.pts_s, extra={
                "loss": st.loss, "rolled_back": st.rolled_back, "rollbacks": st.rollbacks,
                "timings_ms": {k: round(v * 1000, 3) for k, v in timings.items()},
            })
            done += 1
            bar.update(1)
            if st.loss is not None:
                bar.set_postfix(loss=f"{st.loss:.4f}", segments=len(record["segments_info"]), refresh=False)
            t_decode = time.perf_counter()
    except KeyboardInterrupt:
        interrupted = True
        logger.warning("interrupted after %d frames; finishing the output files", done)
    finally:
        bar.close()
        files = writer.close()
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
