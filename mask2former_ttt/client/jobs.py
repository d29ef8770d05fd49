"""Upload jobs: submit a video, wait for it with a progress bar, download its result files."""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
import zipfile
from pathlib import Path, PurePosixPath
from typing import IO, Any

import httpx
from tqdm import tqdm

from .errors import ClientError, JobFailedError
from .http_api import check

log = logging.getLogger(__name__)
DONE = ("succeeded", "failed", "cancelled")


def submit(http: httpx.Client, path: str | Path, fields: dict[str, str]) -> dict[str, Any]:
    """`POST /v1/jobs` (multipart `file` + `fields`) -> the job record (state `queued`)."""
    path = Path(path)
    with path.open("rb") as fh:
        return check(http.post("/v1/jobs", files={"file": (path.name, fh)}, data=fields)).json()


def wait(http: httpx.Client, job_id: str, progress: bool = True, poll_s: float = 0.5,
         timeout_s: float | None = None) -> dict[str, Any]:
    """Poll `GET /v1/jobs/{id}` until the job is done (a tqdm bar of frames_done / frames_total when `progress`);
    the final record, or `JobFailedError` if it failed / was cancelled, `ClientError("timeout")` after `timeout_s`."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    bar = tqdm(desc=f"job {job_id}", unit="frame", disable=not progress, leave=False)
    try:
        while True:
            job = check(http.get(f"/v1/jobs/{job_id}")).json()
            bar.total = job.get("frames_total") or None
            bar.n = job.get("frames_done", 0)
            bar.set_postfix_str(job["state"], refresh=True)
            if job["state"] in DONE:
                break
            if deadline is not None and time.monotonic() > deadline:
                raise ClientError("timeout", f"job {job_id} still {job['state']} after {timeout_s:g} s")
            time.sleep(poll_s)  # polling interval of the HTTP API, not synchronisation
    finally:
        bar.close()
    if job["state"] != "succeeded":
        raise JobFailedError(job)
    return job


def download(http: httpx.Client, job: dict[str, Any], dest_dir: str | Path) -> list[Path]:
    """Every file of `job["results"]` into `dest_dir` (same relative names); returns the paths written.
    Directory entries (`panoptic/`) come from `GET /v1/jobs/{id}/archive` when the service has it; otherwise
    they are skipped with a warning."""
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    folders = [name for name in job["results"] if name.endswith("/")]
    for name in job["results"]:
        if name.endswith("/"):
            continue
        target = _inside(dest, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        with http.stream("GET", f"/v1/jobs/{job['id']}/results/{name}") as response:
            check(response)
            with target.open("wb") as fh:
                for chunk in response.iter_bytes():
                    fh.write(chunk)
        written.append(target)
    if folders:
        written += _download_folders(http, job["id"], folders, dest)
    return written


def _download_folders(http: httpx.Client, job_id: str, folders: list[str], dest: Path) -> list[Path]:
    """The files of `folders` from the job's ZIP archive (spooled to a temporary file, not held in memory)."""
    with http.stream("GET", f"/v1/jobs/{job_id}/archive") as response:
        if response.status_code in (404, 405):
            log.warning("the service has no result archive (GET /v1/jobs/{id}/archive): skipped %s", folders)
            return []
        check(response)
        with tempfile.TemporaryFile() as spool:
            for chunk in response.iter_bytes():
                spool.write(chunk)
            spool.seek(0)
            return _extract(spool, folders, dest)


def _extract(archive: IO[bytes], folders: list[str], dest: Path) -> list[Path]:
    """Members of a ZIP that lie in one of `folders` (at its top or under one leading folder, the job id)."""
    written = []
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            rel = None if info.is_dir() else _relative(info.filename, folders)
            if rel is None:
                continue
            target = _inside(dest, rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst)
            written.append(target)
    return written


def _relative(name: str, folders: list[str]) -> str | None:
    parts = PurePosixPath(name).parts
    for skip in (0, 1):  # "panoptic/x.png" or "<job>/panoptic/x.png"
        rel = "/".join(parts[skip:])
        if any(rel.startswith(folder) for folder in folders):
            return rel
    return None


def _inside(dest: Path, name: str) -> Path:
    """`dest / name`, refusing names that would leave `dest` (absolute paths, `..`)."""
    target = (dest / name).resolve()
    if dest.resolve() not in target.parents:
        raise ClientError("bad_name", f"refusing result name {name!r}: outside {dest}")
    return target
