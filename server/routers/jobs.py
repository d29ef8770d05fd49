"""Upload jobs: `POST /v1/jobs` (multipart `file` + optional `task`, `method`, `preset`, `score_threshold`,
`min_area`, `webhook_url`, `legend`, `labels`, `encodings`), `GET /v1/jobs[/{id}]`, `GET /v1/jobs/{id}/results/{name}` (a file,
or a folder's listing), `GET /v1/jobs/{id}/archive` (every result as one ZIP), `DELETE /v1/jobs/{id}`."""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse

from model.config import TASKS
from mask2former_ttt.video_io import VideoError, probe
from server.auth import Principal
from server.deps import Authorized, JobRunnerDep, JobStoreDep, PrincipalDep, SettingsDep, check_method
from server.jobs.archive import iter_zip, result_files
from server.jobs.options import job_options, jsonl_encodings, overlay_options
from server.jobs.runner import JobRunner
from server.jobs.store import Job, JobStore
from server.jobs.upload import UploadError, receive_upload
from server.logging_setup import kv
from server.origin import SameOrigin
from server.params import JobId, ResultName
from server.schemas import UPLOAD_REQUEST_BODY, JobList, JobOut, error_responses
from server.settings import Settings

log = logging.getLogger(__name__)
router = APIRouter(tags=["jobs"], dependencies=[Authorized, SameOrigin], responses=error_responses(401, 503))

# HTTP status per probe problem: the media type is wrong (415) vs the media is unusable (422).
VIDEO_ERROR_STATUS = {
    "not_video": 415,
    "no_video_stream": 415,
    "empty": 422,
    "corrupt": 422,
    "too_long": 422,
    "too_many_frames": 422,
    "too_large": 422,
    "not_found": 422,
}
MEDIA_TYPES = {".mp4": "video/mp4", ".jsonl": "application/x-ndjson", ".json": "application/json", ".png": "image/png"}


def _job(store: JobStore, job_id: str, principal: Principal) -> Job:
    """The job if it exists and the caller owns it (or is an admin); 404 otherwise, so ids of other keys' jobs
    are indistinguishable from unknown ids."""
    job = store.get(job_id)
    if job is None or not principal.owns(job.owner):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no job {job_id!r}")
    return job


def _succeeded(store: JobStore, job_id: str, principal: Principal) -> Job:
    """The caller's job (404 as `_job`) if it has succeeded; 409 naming its state otherwise."""
    job = _job(store, job_id, principal)
    if job.state != "succeeded":
        raise HTTPException(
            status.HTTP_409_CONFLICT, detail=f"job is {job.state}; results are served once it has succeeded"
        )
    return job


def _check_queue_quota(settings: Settings, runner: JobRunner, owner: str) -> None:
    """429 when `owner` already has `max_queued_jobs_per_key` jobs waiting."""
    queued = runner.queued_jobs(owner)
    if queued >= settings.jobs.max_queued_per_key:
        detail = (
            f"this API key already has {queued} queued jobs; the limit is {settings.jobs.max_queued_per_key} "
            "(max_queued_jobs_per_key): wait until some have started, or delete some"
        )
        log.info("upload refused", extra=kv(status=429, reason=detail))
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, detail=detail)


@router.post(
    "/v1/jobs",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobOut,
    responses=error_responses(403, 413, 415, 422, 429),
    openapi_extra=UPLOAD_REQUEST_BODY,
)
async def create_job(
    request: Request, settings: SettingsDep, store: JobStoreDep, runner: JobRunnerDep, principal: PrincipalDep
) -> JSONResponse:
    """Upload a video (multipart field `file`; optional fields `task`, `method`, `preset`). The body is streamed
    to disk with a size cap, then probed with PyAV before the job is accepted (202 + id)."""
    _check_queue_quota(settings, runner, principal.key_id)  # before the upload: no bandwidth spent on a refusal
    job_id = store.new_id()
    directory = store.job_dir(job_id)
    directory.mkdir(parents=True)
    try:
        path, filename, size, fields = await receive_upload(request, directory, int(settings.upload.max_bytes))
        task = fields.get("task", "semantic")
        method = fields.get("method") or settings.ttt.method
        preset = fields.get("preset") or settings.ttt.preset
        if task not in TASKS:
            raise UploadError(422, f"unknown task {task!r}; choose one of {list(TASKS)}")
        keep, webhook_url = job_options(fields, settings)
        legend, labels = overlay_options(fields)
        encodings = jsonl_encodings(fields)
        try:
            check_method(method, preset)
        except ValueError as exc:
            raise UploadError(422, str(exc)) from None
        try:
            info = await asyncio.to_thread(
                probe, path, max_frames=settings.upload.max_frames, max_pixels=settings.upload.max_pixels
            )
        except VideoError as exc:
            raise UploadError(VIDEO_ERROR_STATUS.get(exc.kind, 422), f"{exc.kind}: {exc.message}") from None
        _check_queue_quota(settings, runner, principal.key_id)  # again, right before the job is recorded
    except UploadError as exc:
        shutil.rmtree(directory, ignore_errors=True)
        log.info("upload refused", extra=kv(status=exc.status, reason=exc.message))
        raise HTTPException(exc.status, detail=exc.message) from None
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    job = Job(
        id=job_id,
        owner=principal.key_id,
        task=task,
        method=method,
        preset=preset,
        filename=filename,
        size_bytes=size,
        video=info.to_dict(),
        frames_total=info.frames,
        score_threshold=keep.score_threshold,
        min_area=keep.min_area,
        webhook_url=webhook_url,
        legend=legend,
        labels=labels,
        encodings=encodings,
    )
    store.save(job)
    runner.enqueue(job_id)
    log.info("job accepted", extra=kv(job=job_id, bytes=size, frames=info.frames, codec=info.codec))
    return JSONResponse(job.public(), status_code=status.HTTP_202_ACCEPTED, headers={"Location": f"/v1/jobs/{job_id}"})


@router.get("/v1/jobs", response_model=JobList)
async def list_jobs(store: JobStoreDep, principal: PrincipalDep) -> JobList:
    """The caller's jobs (an admin key: every job), oldest first."""
    mine = [j for j in store.jobs.values() if principal.owns(j.owner)]
    return JobList(jobs=[JobOut(**j.public()) for j in sorted(mine, key=lambda j: j.created)])


@router.get("/v1/jobs/{job_id}", response_model=JobOut, responses=error_responses(404))
async def get_job(job_id: JobId, store: JobStoreDep, principal: PrincipalDep) -> JobOut:
    """State, progress (frames done / total, fps, ETA), error and result file names."""
    return JobOut(**_job(store, job_id, principal).public())


@router.get(
    "/v1/jobs/{job_id}/results/{name:path}",
    response_class=FileResponse,
    response_model=None,
    responses={
        200: {"content": {t: {} for t in sorted(set(MEDIA_TYPES.values()))}, "description": "a file / folder listing"},
        **error_responses(404, 409),
    },
)
async def get_result(
    job_id: JobId, name: ResultName, store: JobStoreDep, principal: PrincipalDep
) -> Response:
    """Download a result: `results.jsonl`, `overlay.mp4`, `panoptic.json`, `panoptic/000000.png`, ... A folder
    (`panoptic/`, as `results` lists it) answers JSON `{"folder", "files", "archive"}`: its files' names for this
    route, and the archive URL to get them all at once."""
    job = _succeeded(store, job_id, principal)
    root = store.results_dir(job_id).resolve()
    path = (root / name).resolve()
    if root in path.parents and path.is_dir():
        folder = path.relative_to(root).as_posix()
        files = await asyncio.to_thread(result_files, root, folder)
        return JSONResponse({"folder": f"{folder}/", "files": files, "archive": f"/v1/jobs/{job_id}/archive"})
    if root not in path.parents or not path.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no result {name!r}; available: {job.results}")
    return FileResponse(
        path,
        media_type=MEDIA_TYPES.get(Path(name).suffix, "application/octet-stream"),
        filename=f"{job_id}-{path.name}",
    )


@router.get(
    "/v1/jobs/{job_id}/archive",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/zip": {}}, "description": "a ZIP"}, **error_responses(404, 409)},
)
async def get_archive(job_id: JobId, store: JobStoreDep, principal: PrincipalDep) -> StreamingResponse:
    """Every result file as one ZIP (`<job id>-results.zip`, entries `<job id>/<result path>`), streamed."""
    _succeeded(store, job_id, principal)
    root = store.results_dir(job_id)
    headers = {"Content-Disposition": f'attachment; filename="{job_id}-results.zip"'}
    return StreamingResponse(iter_zip(root, job_id), media_type="application/zip", headers=headers)


@router.delete(
    "/v1/jobs/{job_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=error_responses(403, 404),
)
async def delete_job(job_id: JobId, store: JobStoreDep, runner: JobRunnerDep, principal: PrincipalDep) -> Response:
    """Cancel the job if it is queued or running, then delete its upload and results."""
    _job(store, job_id, principal)
    await asyncio.to_thread(runner.cancel, job_id)
    store.delete(job_id)
    log.info("job deleted", extra=kv(job=job_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
