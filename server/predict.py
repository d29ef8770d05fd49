"""One image through the device worker (`POST /v1/predict`), the way live streams reach it.

- With a `stream_id`: the caller's live stream (a WebSocket stream or a camera). The prediction is an in-order
  control on that stream (`DeviceWorker.control`, reply not sent to the stream's consumer): it runs on the stream's
  lane (its actor on Ray) between two of its frames, with its current weights, and changes nothing of the stream
  (`mask2former_ttt.ttt.predict_only.predict_frame`). Other streams are not involved.
- Without: a one-image stream with method `main_only` is admitted like any stream (a free slot; the key's live-stream
  quota), takes the same control, and is closed.

The image is decoded off the lanes with the WebSocket frames' decoder and pixel limit; the result is a `FrameResult`,
encoded by the caller exactly as a WebSocket result is.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

import numpy as np
import torch

from mask2former_ttt.tracking import MaskTracker
from mask2former_ttt.ttt.predict_only import predict_frame
from model.postprocess import InstanceFilter
from server.auth import Principal
from server.events import FrameResult
from server.rtsp_streams import RtspManager
from server.wire.inbound import encodings_for
from server.worker.admission import QuotaError
from server.worker.imaging import MAX_RESULT_SIDE, result_size
from server.worker.stream_session import StreamSession
from server.worker import CapacityError

PREDICT_METHOD = "main_only"
LIVE_SOURCES = ("ws", "rtsp")


class PredictError(Exception):
    """The prediction cannot be made: `status` is the HTTP status to answer with, `message` says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def live_stream(worker: Any, rtsp: RtspManager, stream_id: str, principal: Principal) -> StreamSession:
    """The caller's live stream by id: a camera's id or a WebSocket stream's id (another key's: 404, as unknown
    ids); PredictError 404 when there is none, 409 when the camera's stream holds no adapter any more (failed)."""
    camera = rtsp.find(stream_id, principal)
    if camera is not None:
        session = camera.session
        if camera.released or session is None or session.closed:
            raise PredictError(409, f"camera {stream_id!r} has no adapted weights any more (it failed or stopped)")
        return session
    session = worker.sessions.get(stream_id)
    if session is None or session.source not in LIVE_SOURCES or not principal.owns(session.owner):
        raise PredictError(404, f"no live stream {stream_id!r}")
    return session


def _predict_control(rgb: np.ndarray, task: str, keep: InstanceFilter) -> Callable[[StreamSession], dict]:
    """The control body, run on the stream's lane: rgb (H, W, 3) uint8 -> `{"step", "frames"}` (the FrameStep and
    the frames the stream had processed), or `{"error"}` naming the adapter's failure."""

    def run(session: StreamSession) -> dict:
        frame = torch.from_numpy(rgb).permute(2, 0, 1)  # (3, H, W) view
        out_size = result_size(rgb.shape[0], rgb.shape[1], MAX_RESULT_SIDE)
        try:
            step = predict_frame(session.adapter, frame, task, out_size, keep, MaskTracker())  # ids: a first frame
        except Exception as exc:  # noqa: BLE001 - reported to the caller; the stream goes on
            return {"error": f"{type(exc).__name__}: {exc}"}
        return {"step": step, "frames": session.processed}

    return run


async def _run_on(worker: Any, session: StreamSession, fn: Callable[[StreamSession], dict]) -> dict:
    try:
        reply = await asyncio.wrap_future(worker.control(session, "predict", fn, notify=False))
    except RuntimeError as exc:  # the stream closed before the prediction ran, or the worker stopped
        raise PredictError(409 if "closed" in str(exc) else 503, f"no prediction: {exc}") from None
    if "error" in reply:
        raise PredictError(500, f"adapter_error: {reply['error']}")
    return reply


async def _one_image_stream(worker: Any, principal: Principal, preset: str) -> StreamSession:
    """A `main_only` stream admitted for one image (PredictError 503 when the service is full, 429 at the key's
    live-stream quota)."""
    session = StreamSession("predict", "semantic", PREDICT_METHOD, preset, "block", 1, lambda obj: None,
                            owner=principal.key_id)
    try:
        return await asyncio.wrap_future(worker.open_session(session))
    except QuotaError as exc:
        raise PredictError(429, str(exc)) from None
    except CapacityError as exc:
        raise PredictError(503, str(exc)) from None
    except RuntimeError as exc:
        raise PredictError(503, f"the device worker is not running: {exc}") from None


async def predict(
    worker: Any,
    rtsp: RtspManager,
    principal: Principal,
    rgb: np.ndarray,
    task: str,
    *,
    stream_id: str | None,
    encodings: list[str] | None,
    keep: InstanceFilter,
    preset: str,
    received: float,
    decode_s: float,
) -> FrameResult:
    """rgb (H, W, 3) uint8 -> its FrameResult (`stream_id`: the caller's live stream's weights, else `main_only`)."""
    fn = _predict_control(rgb, task, keep)
    if stream_id is not None:
        session = live_stream(worker, rtsp, stream_id, principal)
        reply = await _run_on(worker, session, fn)
    else:
        session = await _one_image_stream(worker, principal, preset)
        try:
            reply = await _run_on(worker, session, fn)
        finally:
            worker.close_session(session, "prediction done")
    step = reply["step"]
    step.timings_s = {"decode": decode_s, **step.timings_s}
    return FrameResult(
        stream_id=session.id if stream_id is None else stream_id,
        frame_id=None,
        index=int(reply["frames"]),
        task=task,
        image=rgb,
        step=step,
        encodings=encodings_for(task, encodings),
        received=received,
        capture_ts=None,
        pts_s=None,
        dropped=0,
        memory_bytes=session.memory_bytes,
    )
