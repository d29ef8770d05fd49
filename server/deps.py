"""Shared dependencies: the app's singletons (kept on `app.state` by `create_app`) as `Annotated` types for
routes (`WorkerDep`, `SettingsDep`, ...), and request validation."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, status
from starlette.requests import HTTPConnection

from model.ymodel import YModel
from mask2former_ttt.ttt.config import TTT_PRESETS
from mask2former_ttt.ttt.methods import check_method as check_ttt_method
from server.auth import PrincipalDep, require_api_key
from server.jobs.runner import JobRunner
from server.jobs.store import JobStore
from server.metrics import Metrics
from server.rtsp_streams import RtspManager
from server.settings import Settings
from server.worker import DeviceWorker

Authorized = Depends(require_api_key)
__all__ = ["Authorized", "PrincipalDep"]


def get_settings(conn: HTTPConnection) -> Settings:
    return conn.app.state.settings


def get_metrics(conn: HTTPConnection) -> Metrics:
    return conn.app.state.metrics


def _started(conn: HTTPConnection, name: str) -> object:
    value = getattr(conn.app.state, name, None)
    if value is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="the service is still starting")
    return value


def get_model(conn: HTTPConnection) -> YModel:
    return _started(conn, "model")  # type: ignore[return-value]


def get_worker(conn: HTTPConnection) -> DeviceWorker:
    return _started(conn, "worker")  # type: ignore[return-value]


def get_job_store(conn: HTTPConnection) -> JobStore:
    return _started(conn, "job_store")  # type: ignore[return-value]


def get_job_runner(conn: HTTPConnection) -> JobRunner:
    return _started(conn, "job_runner")  # type: ignore[return-value]


def get_rtsp(conn: HTTPConnection) -> RtspManager:
    return _started(conn, "rtsp")  # type: ignore[return-value]


SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
ModelDep = Annotated[YModel, Depends(get_model)]
WorkerDep = Annotated[DeviceWorker, Depends(get_worker)]
JobStoreDep = Annotated[JobStore, Depends(get_job_store)]
JobRunnerDep = Annotated[JobRunner, Depends(get_job_runner)]
RtspDep = Annotated[RtspManager, Depends(get_rtsp)]


def check_method(method: str, preset: str) -> None:
    """ValueError naming the problem if `method` / `preset` are unknown or the method cannot serve streams."""
    check_ttt_method(method, live=True)
    if preset not in TTT_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(TTT_PRESETS)}")
