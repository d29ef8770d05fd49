"""Shared dependencies: the app's singletons (kept on `app.state` by `create_app`) and request validation."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import Depends, Request

from server.auth import require_api_key
from server.settings import Settings
from server.worker import DeviceWorker
from server.worker.device_worker import LIVE_UNSUPPORTED

if TYPE_CHECKING:
    from server.jobs.runner import JobRunner
    from server.jobs.store import JobStore
    from server.rtsp_streams import RtspManager

Authorized = Depends(require_api_key)


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_worker(request: Request) -> DeviceWorker:
    return request.app.state.worker


def get_job_store(request: Request) -> "JobStore":
    return request.app.state.job_store


def get_job_runner(request: Request) -> "JobRunner":
    return request.app.state.job_runner


def get_rtsp(request: Request) -> "RtspManager":
    return request.app.state.rtsp


def check_method(method: str, preset: str) -> None:
    """ValueError naming the problem if `method` / `preset` are not known to the TTT engine."""
    from mask2former_ttt.ttt import METHODS
    from mask2former_ttt.ttt.config import TTT_PRESETS

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {sorted(METHODS)}")
    if method in LIVE_UNSUPPORTED:
        raise ValueError(f"method {method!r} cannot run in the service: it {LIVE_UNSUPPORTED[method]}")
    if preset not in TTT_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(TTT_PRESETS)}")
