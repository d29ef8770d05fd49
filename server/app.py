"""App factory: `create_app(settings)` wires the model, the device worker, jobs, RTSP streams and the routers.

Run it with `m2f-ttt serve` or `uvicorn --factory server.app:create_app`. OpenAPI docs at `/docs` and `/redoc`
(served without a CDN).
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from fastapi import FastAPI

from model.checkpoint import load_checkpoint
from model.config import ModelConfig
from model.device import resolve_device
from mask2former_ttt.readiness import default_method, recon_state
from server.allow import install_allow_header
from server.jobs.runner import JobRunner
from server.jobs.store import JobStore
from server.logging_setup import kv
from server.metrics import Metrics
from server.routers import (
    checkpoints, docs_offline, jobs, ops, predict, recordings, streams_probe, streams_rtsp, streams_ws, ui,
)
from server.rtsp_streams import RtspManager, default_source_factory
from server.settings import Settings
from server.worker.device_worker import AdapterFactory
from server.worker_factory import build_worker

log = logging.getLogger(__name__)


def apply_default_method(settings: Settings, cfg: ModelConfig) -> None:
    """With a model whose g is untrained and no method set by the operator (`M2F_TTT_METHOD`), new streams default
    to `main_only`; one warning line says so and how to prepare the model."""
    explicit = "method" in settings.ttt.model_fields_set
    method, warning = default_method(cfg, settings.ttt.method if explicit else None, settings.ttt.method)
    if warning:
        log.warning(warning)
    if method != settings.ttt.method:
        settings.ttt.method = method
        settings.ttt.__pydantic_fields_set__.discard("method")  # still the service's default, not the operator's


def create_app(
    settings: Settings | None = None,
    *,
    adapter_factory: AdapterFactory | None = None,
    rtsp_source_factory: Any = None,
) -> FastAPI:
    """Build the service. `adapter_factory` / `rtsp_source_factory` replace the TTT engine / camera source
    (tests); by default `mask2former_ttt.ttt.build_adapter` and `server.sources.rtsp.RtspSource`."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # ray: the actors hold the devices
        device = resolve_device("cpu" if settings.backend == "ray" else settings.model.device)
        model = await asyncio.to_thread(load_checkpoint, settings.model.path, device)
        apply_default_method(settings, model.cfg)
        metrics: Metrics = app.state.metrics
        worker = await asyncio.to_thread(build_worker, settings, model, device, metrics, adapter_factory)
        worker.start()
        store = JobStore(settings.jobs.dir)
        runner = JobRunner(store, worker, settings, metrics)
        for job_id in store.load():
            runner.enqueue(job_id)
        runner.start()
        rtsp = RtspManager(
            worker,
            settings,
            metrics,
            list(model.cfg.class_names),
            source_factory=rtsp_source_factory or default_source_factory,
            thing_class_ids=list(model.cfg.thing_class_ids),
        )
        app.state.model, app.state.worker = model, worker
        app.state.job_store, app.state.job_runner, app.state.rtsp = store, runner, rtsp
        log.info(
            "service ready",
            extra=kv(
                model=str(settings.model.path),
                device=str(device),
                name=model.cfg.name,
                max_streams=settings.streams.max,
                auth=settings.auth_enabled,
                backend=settings.backend,
                method=settings.ttt.method,
                g=recon_state(model.cfg),
                guard="calibrated" if model.cfg.guard_calibrated else "not calibrated",
            ),
        )
        try:
            yield
        finally:
            await rtsp.shutdown()
            await asyncio.to_thread(runner.stop)
            await asyncio.to_thread(worker.stop)
            log.info("service stopped")

    app = FastAPI(
        title="mask2former-ttt",
        version="0.1.0",
        description="Streaming video segmentation whose model keeps learning on each stream (online TTT-MAE).",
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc come from server.routers.docs_offline (no CDN)
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.model = None
    app.state.worker = None
    routers = (ops, predict, streams_ws, streams_probe, streams_rtsp, recordings, checkpoints, jobs, ui, docs_offline)
    for module in routers:
        app.include_router(module.router)
    install_allow_header(app)
    return app
