"""Operations: `/healthz` (process up), `/readyz` (model loaded, worker alive, capacity left), `/metrics`,
`/v1/info`."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from model.checkpoint import bundled_model_dir
from model.postprocess import DEFAULT_MIN_AREA, DEFAULT_SCORE_THRESHOLD
from mask2former_ttt.ttt.methods import LIVE_METHODS
from mask2former_ttt.ttt.config import TTT_PRESETS
from server.deps import Authorized, MetricsDep, ModelDep, SettingsDep, WorkerDep
from server.schemas import Capacity, Health, Readiness, ServiceInfo, error_responses
from server.worker.imaging import MAX_RESULT_SIDE
from server.worker.stream_session import QUEUE_SIZE

router = APIRouter(tags=["ops"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """Liveness: the process answers."""
    return Health()


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness, "description": "not ready"}})
async def readyz(request: Request) -> JSONResponse:
    """Readiness: 200 when the model is loaded, the device worker runs and another stream would fit; else 503
    with the reasons. Answers during start-up too (then 503). Open (no key): it names the model, never its path."""
    worker = getattr(request.app.state, "worker", None)
    model = getattr(request.app.state, "model", None)
    capacity = Capacity(**worker.capacity()) if worker is not None else Capacity()
    checks = {
        "model_loaded": model is not None,
        "worker_alive": bool(worker is not None and worker.alive),
        "capacity_left": capacity.available,
    }
    body = Readiness(
        ready=all(checks.values()),
        checks=checks,
        capacity=capacity,
        model={"name": model.cfg.name} if model is not None else None,
        cluster=worker.cluster() if hasattr(worker, "cluster") else None,  # Ray backend: its actors
    )
    return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)


class PrometheusText(PlainTextResponse):
    """The Prometheus text exposition format (its content type names the format version)."""

    media_type = CONTENT_TYPE_LATEST


@router.get(
    "/metrics",
    dependencies=[Authorized],
    response_class=PrometheusText,
    responses={
        200: {"description": "Prometheus text exposition format"},
        401: {  # JSON, unlike the route's own media type (hence no `model`, which FastAPI would file under it)
            "description": "missing or invalid API key (auth on)",
            "content": {"application/json": {"schema": {"properties": {"detail": {"type": "string"}}}}},
        },
    },
)
async def metrics(registry: MetricsDep) -> Response:
    """Prometheus exposition of the app's registry."""
    return PrometheusText(registry.render())


@router.get("/v1/info", dependencies=[Authorized], response_model=ServiceInfo, responses=error_responses(401, 503))
async def info(settings: SettingsDep, model: ModelDep, worker: WorkerDep) -> ServiceInfo:
    """Model classes, TTT methods/presets and limits a client needs to build requests."""
    cfg, s = model.cfg, settings
    return ServiceInfo(
        model={
            "name": cfg.name,
            "class_names": cfg.class_names,
            "thing_class_ids": cfg.thing_class_ids,
            "image_size": cfg.image_size,
            "bundled_demo": settings.model.path.resolve() == bundled_model_dir().resolve(),
            "recon_trained": cfg.recon_trained,
            "guard_calibrated": cfg.guard_calibrated,
        },
        methods=list(LIVE_METHODS),
        presets=sorted(TTT_PRESETS),
        defaults={
            "method": s.ttt.method, "preset": s.ttt.preset, "queue_size": QUEUE_SIZE,
            "score_threshold": DEFAULT_SCORE_THRESHOLD, "min_area": DEFAULT_MIN_AREA,
        },
        limits={
            "max_streams": s.streams.max,
            "max_state_memory": int(s.streams.max_state_memory),
            "upload_max_bytes": int(s.upload.max_bytes),
            "upload_max_frames": s.upload.max_frames,
            "max_frame_bytes": int(s.streams.max_frame_bytes),
            "max_result_side": MAX_RESULT_SIDE,
        },
        capacity=Capacity(**worker.capacity()),
    )
