"""Operations: `/healthz` (process up), `/readyz` (model loaded, worker alive, capacity left), `/metrics`."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from server.deps import Authorized

router = APIRouter(tags=["ops"])


@router.get("/healthz")
async def healthz() -> dict:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """Readiness: 200 when the model is loaded, the device worker runs and another stream would fit; else 503
    with the reasons."""
    state = request.app.state
    worker = getattr(state, "worker", None)
    model = getattr(state, "model", None)
    capacity = worker.capacity() if worker is not None else {}
    checks = {
        "model_loaded": model is not None,
        "worker_alive": bool(worker is not None and worker.alive),
        "capacity_left": bool(capacity.get("available")),
    }
    ready = all(checks.values())
    body = {
        "ready": ready,
        "checks": checks,
        "capacity": capacity,
        "model": {"name": model.cfg.name, "path": str(state.settings.model_path)} if model is not None else None,
    }
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", dependencies=[Authorized])
async def metrics(request: Request) -> Response:
    """Prometheus exposition of the app's registry."""
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/info", dependencies=[Authorized])
async def info(request: Request) -> dict:
    """Model classes, TTT methods/presets and limits a client needs to build requests."""
    from mask2former_ttt.ttt import METHODS
    from mask2former_ttt.ttt.config import TTT_PRESETS

    state = request.app.state
    s = state.settings
    cfg = state.model.cfg
    return {
        "model": {
            "name": cfg.name,
            "class_names": cfg.class_names,
            "thing_class_ids": cfg.thing_class_ids,
            "image_size": cfg.image_size,
        },
        "methods": sorted(METHODS),
        "presets": sorted(TTT_PRESETS),
        "defaults": {"method": s.ttt_method, "preset": s.ttt_preset, "queue_size": s.queue_size},
        "limits": {
            "max_streams": s.max_streams,
            "max_state_memory": int(s.max_state_memory),
            "upload_max_bytes": int(s.upload_max_bytes),
            "max_duration_s": s.max_duration_s,
            "max_frame_bytes": int(s.max_frame_bytes),
            "max_result_side": s.max_result_side,
        },
        "capacity": state.worker.capacity(),
    }
