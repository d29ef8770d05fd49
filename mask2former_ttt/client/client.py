"""`Client`: the service's API from Python — WebSocket streams, upload jobs and RTSP cameras."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from . import jobs
from .cameras import camera_messages
from .http_api import check, make_http
from .predict import Image_, encoding_list
from .predict import predict as post_predict
from .sources import Source
from .stream import ErrorHook, Stream


def _ws_url(url: str) -> str:
    base = url.rstrip("/")
    if base.startswith("http://") or base.startswith("https://"):
        return "ws" + base[4:]
    return base


def _http_url(url: str) -> str:
    base = url.rstrip("/")
    if base.startswith("ws://") or base.startswith("wss://"):
        return "http" + base[2:]
    return base


def _drop_none(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


class Client:
    """A client of one mask2former-ttt service at `url` (`http://HOST:PORT` or `ws://HOST:PORT`). `api_key` goes
    in the `X-API-Key` header of HTTP calls and in the first message of WebSockets (never in a URL)."""

    def __init__(self, url: str, api_key: str | None = None, timeout_s: float = 60.0) -> None:
        self.url, self.ws_url = _http_url(url), _ws_url(url)
        self.api_key = api_key
        self.http = make_http(self.url, api_key, timeout_s)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self.http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- WebSocket streams -------------------------------------------------------------------------------------
    def stream(self, source: Source, task: str = "semantic", method: str | None = None, preset: str | None = None,
               *, max_in_flight: int = 2, policy: str = "block", encodings: list[str] | None = None,
               max_width: int | None = None, max_frames: int | None = None, fps: float | None = None,
               timeout_s: float = 300.0, on_error: ErrorHook | None = None, **start: Any) -> Stream:
        """A `Stream` of `source` (video file path, camera index or device path, RTSP/HTTP URL, or an iterable of
        JPEG/PNG bytes or RGB arrays): iterate it (or use it as a context manager, then iterate) for one result
        dict per frame, in order (`decode_masks` turns its masks into arrays). At most `max_in_flight` frames wait
        for their results at a time. `start` adds fields of the start message (`score_threshold`, `min_area`,
        `queue_size`)."""
        msg = _drop_none(type="start", task=task, method=method, preset=preset, policy=policy, encodings=encodings,
                         api_key=self.api_key, **start)
        return Stream(self.ws_url, source, msg, max_in_flight=max_in_flight, max_width=max_width,
                      max_frames=max_frames, fps=fps, timeout_s=timeout_s, on_error=on_error)

    # --- single images -----------------------------------------------------------------------------------------
    def predict(self, image_or_path: Image_, task: str = "semantic", stream_id: str | None = None,
                encodings: str | Sequence[str] | None = None, *, score_threshold: float | None = None,
                min_area: int | None = None) -> dict[str, Any]:
        """`POST /v1/predict`: one image (JPEG / PNG bytes, a path to one, or an (H, W, 3) uint8 RGB array) -> the
        result dict a WebSocket frame gets (`decode_masks` turns its masks into arrays). With `stream_id` (one of
        your live streams: a WebSocket stream's `stream_id`, or a camera's id) the image is predicted with that
        stream's adapted weights, else with the initial ones. `encodings`: `png`, `rle`, `polygons`, `overlay`
        (one name or several; default: the task's). `NotFoundError` for an unknown stream, `CapacityError` when
        the service is full, `ClientError` for a refused image."""
        params = _drop_none(task=task, stream_id=stream_id, encodings=encoding_list(encodings),
                            score_threshold=score_threshold, min_area=min_area)
        return post_predict(self.http, image_or_path, params)

    # --- upload jobs -------------------------------------------------------------------------------------------
    def submit_job(self, path: str | Path, task: str = "semantic", method: str | None = None,
                   preset: str | None = None, *, wait: bool = True, progress: bool = True,
                   timeout_s: float | None = None) -> dict[str, Any]:
        """Upload a video as a job; with `wait`, poll it to the end (progress bar when `progress`). The job
        record; `JobFailedError` when it failed."""
        job = jobs.submit(self.http, path, _drop_none(task=task, method=method, preset=preset))
        return self.wait_job(job["id"], progress=progress, timeout_s=timeout_s) if wait else job

    def wait_job(self, job_id: str, progress: bool = True, timeout_s: float | None = None) -> dict[str, Any]:
        """Poll `GET /v1/jobs/{id}` until it is done; the final record (`JobFailedError` when it failed)."""
        return jobs.wait(self.http, job_id, progress=progress, timeout_s=timeout_s)

    def job(self, job_id: str) -> dict[str, Any]:
        """The job's record (state, progress, results)."""
        return check(self.http.get(f"/v1/jobs/{job_id}")).json()

    def download(self, job_id: str, dest_dir: str | Path) -> list[Path]:
        """Every result file of a succeeded job into `dest_dir`; the paths written."""
        return jobs.download(self.http, self.job(job_id), dest_dir)

    def delete_job(self, job_id: str) -> None:
        """Cancel the job if it runs and delete its files."""
        check(self.http.delete(f"/v1/jobs/{job_id}"))

    # --- RTSP cameras ------------------------------------------------------------------------------------------
    def add_camera(self, url: str, task: str = "semantic", method: str | None = None, preset: str | None = None,
                   **options: Any) -> dict[str, Any]:
        """`POST /v1/streams`: follow a camera; its status with `id`. `options`: max_fps, policy, encodings,
        score_threshold, min_area. `CapacityError` when the service is full."""
        body = _drop_none(url=url, task=task, method=method, preset=preset, **options)
        return check(self.http.post("/v1/streams", json=body)).json()

    def camera(self, stream_id: str) -> dict[str, Any]:
        """A camera's status (state, counters, last error)."""
        return check(self.http.get(f"/v1/streams/{stream_id}")).json()

    def camera_results(self, stream_id: str, timeout_s: float = 60.0) -> Iterator[dict[str, Any]]:
        """The camera's messages (`subscribed`, `result`, `error`, `state`, `closed`); see `camera_messages`."""
        return camera_messages(self.ws_url, stream_id, self.api_key, timeout_s)

    def delete_camera(self, stream_id: str) -> None:
        """Stop following the camera."""
        check(self.http.delete(f"/v1/streams/{stream_id}"))
