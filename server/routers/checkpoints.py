"""Stream checkpoints of the caller's API key: `GET /v1/checkpoints`, `DELETE /v1/checkpoints/{id}`.

Checkpoints are made and restored through a stream (`POST /v1/streams/{id}/checkpoint|restore` or the WebSocket
`checkpoint` / `restore` messages); limits in docs/configuration.md (`M2F_CHECKPOINT*`)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response, status
from pydantic import BaseModel

from server.deps import Authorized, PrincipalDep, WorkerDep
from server.origin import SameOrigin
from server.params import CheckpointId
from server.schemas import error_responses
from server.worker.checkpoint_index import CheckpointInfo, CheckpointNotFound

router = APIRouter(
    tags=["checkpoints"], dependencies=[Authorized, SameOrigin], responses=error_responses(401, 503)
)


class CheckpointList(BaseModel):
    checkpoints: list[CheckpointInfo]


@router.get("/v1/checkpoints", response_model=CheckpointList)
async def list_checkpoints(worker: WorkerDep, principal: PrincipalDep) -> CheckpointList:
    """The caller's checkpoints (an admin key: all), oldest first."""
    records = worker.states.index.visible(principal.owns)
    return CheckpointList(checkpoints=[r.public() for r in records])


@router.delete(
    "/v1/checkpoints/{checkpoint_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=error_responses(403, 404),
)
async def delete_checkpoint(checkpoint_id: CheckpointId, worker: WorkerDep, principal: PrincipalDep) -> Response:
    """Delete one of the caller's checkpoints; 404 for unknown ids and other keys' checkpoints alike."""
    try:
        worker.states.index.delete(checkpoint_id, principal.owns)
    except CheckpointNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
    return Response(status_code=status.HTTP_204_NO_CONTENT)
