"""Recorded results of camera streams created with `unwatched="record"`: `GET /v1/streams/{id}/recording`
(the segments) and `GET /v1/streams/{id}/recording/{segment}.zip` (one complete segment as a ZIP)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import StreamingResponse

from server.deps import Authorized, PrincipalDep, RtspDep
from server.jobs.archive import iter_zip
from server.origin import SameOrigin
from server.params import SegmentId, StreamId
from server.recording import StreamRecorder
from server.rtsp_streams import RtspManager
from server.schemas import Recording, error_responses
from server.auth import Principal

router = APIRouter(tags=["rtsp"], dependencies=[SameOrigin, Authorized], responses=error_responses(401, 404))


def _recorder(manager: RtspManager, stream_id: str, principal: Principal) -> StreamRecorder:
    """The caller's stream's recorder; 404 for unknown streams, other keys' streams and streams not recording."""
    stream = manager.find(stream_id, principal)
    if stream is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no stream {stream_id!r}")
    if stream.recorder is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail=f"stream {stream_id!r} does not record (create it with \"unwatched\": \"record\")",
        )
    return stream.recorder


@router.get("/v1/streams/{stream_id}/recording", response_model=Recording)
async def list_recording(stream_id: StreamId, manager: RtspDep, principal: PrincipalDep) -> dict:
    """The stream's recorded segments, oldest first; complete ones carry their archive URL."""
    recorder = _recorder(manager, stream_id, principal)
    segments = [
        {**seg.__dict__, "archive": f"/v1/streams/{stream_id}/recording/{seg.name}.zip" if seg.complete else None}
        for seg in recorder.listing()
    ]
    return {"stream_id": stream_id, "segments": segments, "segments_deleted": recorder.segments_deleted}


@router.get(
    "/v1/streams/{stream_id}/recording/{segment}.zip",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/zip": {}}, "description": "a ZIP"}},
)
async def get_segment(stream_id: StreamId, segment: SegmentId, manager: RtspDep, principal: PrincipalDep) -> StreamingResponse:
    """One complete segment as a ZIP (entries `<segment>/results.jsonl`, `<segment>/overlay.mp4`, PNGs); 404 while
    it is being written or once the byte budget deleted it."""
    folder = _recorder(manager, stream_id, principal).segment_dir(segment)
    if folder is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no complete segment {segment!r} (see the listing)")
    headers = {"Content-Disposition": f'attachment; filename="{stream_id}-{segment}.zip"'}
    return StreamingResponse(iter_zip(folder, segment), media_type="application/zip", headers=headers)
