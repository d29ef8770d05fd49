"""The service's device worker for `settings.backend`: the single-process `DeviceWorker` (default) or the Ray
backend's `RayDeviceWorker` (device-worker actors; docs/deployment-ray.md). Both take the same calls from the
routers, the RTSP manager and the job runner."""

from __future__ import annotations

from typing import Any

import torch

from model.ymodel import YModel
from server.metrics import Metrics
from server.settings import Settings
from server.worker import DeviceWorker
from server.worker.device_worker import AdapterFactory, default_adapter_factory, scheduled_adapter_factory
from server.worker.imaging import MAX_RESULT_SIDE
from server.worker.layout import worker_layout
from server.worker.state_store import StreamStateStore


def state_store(settings: Settings) -> StreamStateStore:
    return StreamStateStore(
        settings.checkpoint.dir,
        settings.checkpoint.per_stream,
        int(settings.checkpoint.bytes_per_key),
        settings.checkpoint.retention_s,
    )


def build_worker(
    settings: Settings, model: YModel, device: torch.device, metrics: Metrics, adapter_factory: AdapterFactory | None
) -> Any:
    """A started-able worker (call `.start()`); `model` is on `device` (the CPU for the Ray front-end)."""
    if adapter_factory is None and settings.ttt.schedule:
        adapter_factory = scheduled_adapter_factory(settings.ttt.schedule)
    if settings.backend == "ray":
        from server.ray_backend.service_worker import RayDeviceWorker

        return RayDeviceWorker(model, metrics, settings, states=state_store(settings), adapter_factory=adapter_factory)
    lanes, threads = worker_layout(device, settings.worker.lanes, settings.worker.torch_threads)
    return DeviceWorker(
        model,
        metrics,
        max_streams=settings.streams.max,
        max_state_memory=int(settings.streams.max_state_memory),
        states_dir=state_store(settings),
        max_streams_per_owner=settings.streams.max_per_key if settings.auth_enabled else None,
        max_frame_pixels=settings.streams.max_frame_pixels,
        max_result_side=MAX_RESULT_SIDE,
        torch_threads=threads,
        lanes=lanes,
        cross_stream_batch=settings.worker.cross_stream_batch,
        adapter_factory=adapter_factory or default_adapter_factory,
    )
