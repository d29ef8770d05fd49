"""RTSP camera streams: `POST /v1/streams`, `GET /v1/streams[/{id}]`, `DELETE /v1/streams/{id}`,
in-order controls (`POST /v1/streams/{id}/reset|checkpoint|restore`) and `WS /v1/streams/{id}/results`."""

from __future__ import annotations

import asyncio
import json
import logging
from concurrent.futures import Future
from typing import Callable

from fastapi import APIRouter, HTTPException, Response, WebSocket, WebSocketDisconnect, status
from pydantic import BaseModel, Field

from server.auth import Principal
from server.camera_errors import for_subscriber
from server.deps import Authorized, PrincipalDep, RtspDep, SettingsDep, WorkerDep, check_method
from server.ws_auth import authenticate_websocket
from server.wire.inbound import CLOSE_NORMAL, Encoding, close_reason, encodings_for
from server.wire.outbound import close_with_error
from server.rtsp_streams import CLOSED, RtspManager, RtspStream
from model.config import Task
from server.schemas import ControlDone, StreamList, StreamStatus, error_responses
from server.origin import SameOrigin
from server.params import StreamId
from server.settings import Policy, Unwatched
from server.worker import CapacityError, StreamSession
from server.worker.admission import QuotaError

log = logging.getLogger(__name__)
router = APIRouter(tags=["rtsp"], dependencies=[SameOrigin], responses=error_responses(401, 503))
CONTROL_TIMEOUT_S = 60.0
CLOSE_NOT_FOUND = 4404
CONTROL_ERRORS = error_responses(400, 403, 404, 409)
CLOSE_BAD_GATEWAY = 1014  # the camera (upstream) failed: reason carries its error


class CreateStream(BaseModel):
    """A camera to follow. Unset method/preset use the server defaults."""

    url: str = Field(..., description="rtsp:// or rtsps:// URL (credentials allowed; never echoed back)")
    task: Task = "semantic"
    method: str | None = None
    preset: str | None = None
    max_fps: float | None = Field(None, gt=0, description="process at most this many frames per second")
    policy: Policy = "latest"
    encodings: list[Encoding] | None = None
    score_threshold: float | None = Field(
        None, ge=0, le=1, description="instances / segments scoring less are dropped (default: the service's)"
    )
    min_area: int | None = Field(None, ge=0, le=1 << 24, description="smaller instances / segments (px) are dropped")
    unwatched: Unwatched | None = Field(
        None, description="while nobody subscribes: pause | record | run (default: the service's rtsp_unwatched)"
    )


class RestoreBody(BaseModel):
    checkpoint_id: str


def _stream(manager: RtspManager, stream_id: str, principal: Principal) -> RtspStream:
    """The caller's stream (an admin: any); 404 for unknown ids and for other keys' streams alike."""
    stream = manager.find(stream_id, principal)
    if stream is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no stream {stream_id!r}")
    return stream


@router.post(
    "/v1/streams",
    status_code=status.HTTP_201_CREATED,
    dependencies=[Authorized],
    response_model=StreamStatus,
    responses=error_responses(400, 403, 429),
)
async def create_stream(
    body: CreateStream, response: Response, settings: SettingsDep, manager: RtspDep, principal: PrincipalDep
) -> dict:
    """Start following a camera: 201 {id}; 400 URL not allowed / bad method; 503 when the service is full."""
    method, preset = body.method or settings.ttt.method, body.preset or settings.ttt.preset
    try:
        check_method(method, preset)
        stream = await manager.create(
            body.url,
            body.task,
            method,
            preset,
            body.policy,
            body.max_fps,
            encodings_for(body.task, body.encodings),
            owner=principal.key_id,
            instance_filter=settings.instance_filter(body.score_threshold, body.min_area),
            unwatched=body.unwatched,
        )
    except QuotaError as exc:
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, detail=str(exc), headers={"Retry-After": "5"}) from None
    except CapacityError as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc), headers={"Retry-After": "5"}
        ) from None
    except ValueError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=str(exc)) from None
    response.headers["Location"] = f"/v1/streams/{stream.id}"
    return {"id": stream.id, **manager.status(stream, principal)}


@router.get("/v1/streams", dependencies=[Authorized], response_model=StreamList)
async def list_streams(manager: RtspDep, principal: PrincipalDep) -> dict:
    """The caller's camera streams (an admin key: every stream)."""
    return {"streams": [manager.status(s, principal) for s in manager.visible(principal)]}


@router.get("/v1/streams/{stream_id}", dependencies=[Authorized], response_model=StreamStatus, responses=error_responses(404))
async def get_stream(stream_id: StreamId, manager: RtspDep, principal: PrincipalDep) -> dict:
    """State (connecting / running / reconnecting / failed / stopped), counters, last error, memory."""
    return manager.status(_stream(manager, stream_id, principal), principal)


@router.delete(
    "/v1/streams/{stream_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=[Authorized],
    response_class=Response,
    responses=error_responses(403, 404),
)
async def delete_stream(stream_id: StreamId, manager: RtspDep, principal: PrincipalDep) -> Response:
    """Stop the camera and forget the stream."""
    if not await manager.delete(_stream(manager, stream_id, principal).id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no stream {stream_id!r}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def _control(
    manager: RtspManager, stream_id: str, principal: Principal, name: str, start: Callable[[StreamSession], Future]
) -> dict:
    stream = _stream(manager, stream_id, principal)
    if stream.session.closed:
        raise HTTPException(
            status.HTTP_409_CONFLICT, detail=f"stream {stream_id!r} has no active session ({stream.state})"
        )
    try:
        payload = await asyncio.wait_for(
            asyncio.wrap_future(start(stream.session)), CONTROL_TIMEOUT_S
        )
    except LookupError as exc:  # e.g. no such checkpoint (or another key's)
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
    except ValueError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=str(exc)) from None
    except (RuntimeError, asyncio.TimeoutError) as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"{name} failed: {exc}") from None
    return {"stream_id": stream_id, **payload}


@router.post(
    "/v1/streams/{stream_id}/reset",
    dependencies=[Authorized],
    response_model=ControlDone,
    responses=CONTROL_ERRORS,
)
async def reset_stream(stream_id: StreamId, manager: RtspDep, worker: WorkerDep, principal: PrincipalDep) -> dict:
    """Back to the model's initial weights with an empty window (in order with the queued frames)."""
    return await _control(manager, stream_id, principal, "reset", worker.reset)


@router.post(
    "/v1/streams/{stream_id}/checkpoint",
    status_code=status.HTTP_201_CREATED,
    dependencies=[Authorized],
    response_model=ControlDone,
    responses=CONTROL_ERRORS,
)
async def checkpoint_stream(stream_id: StreamId, manager: RtspDep, worker: WorkerDep, principal: PrincipalDep) -> dict:
    """Save the stream's adapted state to disk; returns its `checkpoint_id` (quotas: docs/configuration.md)."""
    return await _control(manager, stream_id, principal, "checkpoint", worker.checkpoint)


@router.post(
    "/v1/streams/{stream_id}/restore",
    dependencies=[Authorized],
    response_model=ControlDone,
    responses=CONTROL_ERRORS,
)
async def restore_stream(
    stream_id: StreamId, body: RestoreBody, manager: RtspDep, worker: WorkerDep, principal: PrincipalDep
) -> dict:
    """Load one of the caller's checkpoints (same method and preset) into the stream; 404 for another key's."""
    return await _control(
        manager, stream_id, principal, "restore", lambda s: worker.restore(s, body.checkpoint_id, principal)
    )


@router.websocket("/v1/streams/{stream_id}/results")
async def stream_results(websocket: WebSocket, stream_id: str, manager: RtspDep, settings: SettingsDep) -> None:
    """Subscribe to a camera's results: `subscribed` (status), then `result` / `error` / `state` messages."""
    await websocket.accept()
    principal = await authenticate_websocket(websocket, settings)
    if principal is None:
        return
    stream = manager.find(stream_id, principal)
    if stream is None:
        await close_with_error(websocket, CLOSE_NOT_FOUND, "not_found", f"no stream {stream_id!r}")
        return
    if stream.state == "failed":
        reason = manager.status(stream, principal).get("last_error") or "camera failed"
        await close_with_error(websocket, CLOSE_BAD_GATEWAY, "camera_failed", reason)
        return
    queue: asyncio.Queue = asyncio.Queue(maxsize=32)
    stream.subscribers.add(queue)
    watcher = asyncio.create_task(_wait_disconnect(websocket))
    try:
        await websocket.send_text(json.dumps({"type": "subscribed", **manager.status(stream, principal)}))
        while True:
            getter = asyncio.create_task(queue.get())
            done, _ = await asyncio.wait({getter, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if watcher in done:
                getter.cancel()
                return
            msg = for_subscriber(getter.result(), principal)
            if msg is CLOSED:
                await websocket.send_text(json.dumps({"type": "closed", "stream_id": stream_id, "reason": "deleted"}))
                await websocket.close(CLOSE_NORMAL)
                return
            await websocket.send_text(json.dumps(msg))
            if isinstance(msg, dict) and msg.get("type") == "state" and msg.get("state") == "failed":
                await websocket.close(CLOSE_BAD_GATEWAY, reason=close_reason(str(msg.get("last_error") or "camera failed")))
                return
    except (WebSocketDisconnect, RuntimeError):
        return
    finally:
        stream.subscribers.discard(queue)
        watcher.cancel()


async def _wait_disconnect(websocket: WebSocket) -> None:
    while True:
        msg = await websocket.receive()
        if msg["type"] == "websocket.disconnect":
            return

