"""Job checkpoints: the adapter state saved with a job's committed frames, and loaded back when it resumes.

A checkpoint is an in-order control on the job's stream: it runs on the worker lane right after the frames queued
before it (their TTT steps included), saves `state-<frames>.pt` in the job's directory and answers
`{"frames", "state"}`. The runner then commits the result files up to those frames and records
`job.checkpoint = {"frames", "state"}` in job.json: that record is what a restart resumes from, so a crash between
the two steps only leaves an unreferenced state file behind. Adaptation therefore continues from the state it had
at the committed frame, and results of frames after the last commit (a crash) are computed again.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import torch

from mask2former_ttt.outputs.writer import VideoResultWriter
from mask2former_ttt.video_io import fps_fraction
from server.logging_setup import kv
from server.worker.state_store import STATE_FORMAT, load_tracker, state_blob
from server.worker.stream_session import StreamSession

if TYPE_CHECKING:
    from server.jobs.store import Job
    from server.worker import DeviceWorker

log = logging.getLogger(__name__)

CHECKPOINT = "job-checkpoint"
FINAL_CHECKPOINT = "job-final-checkpoint"  # after the last frame queued (end of the video or shutdown)
RESTORE = "job-restore"
STATE_GLOB = "state-*.pt"
RESTORE_TIMEOUT_S = 120.0


def save_state(job_dir: Path) -> Callable[[StreamSession], dict]:
    """Control body: save the session's adapter state, and its tracker's (so instance ids continue, never reused
    after a resume), as `job_dir/state-<frames>.pt` (atomic replace)."""

    def run(session: StreamSession) -> dict:
        name = f"state-{session.processed}.pt"
        tmp = job_dir / f".{name}.tmp"
        torch.save(state_blob(session, tracker=True), tmp)
        os.replace(tmp, job_dir / name)
        return {"frames": session.processed, "state": name}

    return run


def restore_state(path: Path, frames: int) -> Callable[[StreamSession], dict]:
    """Control body: load a state saved by `save_state` into the session's adapter; the session counts the
    `frames` already done (so its step counter and result indexes continue)."""

    def run(session: StreamSession) -> dict:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(blob, dict) or blob.get("format") != STATE_FORMAT:
            raise ValueError(f"{path.name} is not a job state in format {STATE_FORMAT!r}")
        if (blob["method"], blob["preset"]) != (session.method, session.preset):
            raise ValueError(f"{path.name} was saved by method={blob['method']} preset={blob['preset']}")
        if int(blob["frames"]) != frames:
            raise ValueError(f"{path.name} holds the state after {blob['frames']} frames, not {frames}")
        session.adapter.load_state_dict(blob["state"])
        load_tracker(session, blob)
        session.processed = frames
        return {"frames": frames}

    return run


def prune_states(job_dir: Path, keep: str | None) -> None:
    """Delete the job's state files other than `keep` (older checkpoints, or all of them with None)."""
    for path in job_dir.glob(STATE_GLOB):
        if path.name != keep:
            path.unlink(missing_ok=True)
    for path in job_dir.glob(".state-*.pt.tmp"):
        path.unlink(missing_ok=True)


def state_path(job_dir: Path, checkpoint: dict | None) -> Path | None:
    """The state file a checkpoint record names, if it is there."""
    name = (checkpoint or {}).get("state")
    if not name or "/" in name or not (job_dir / name).is_file():
        if name:
            log.warning("job state file missing: adaptation resumes from θ0", extra=kv(dir=str(job_dir), state=name))
        return None
    return job_dir / name


def open_writer(
    job: "Job", results_dir: Path, class_names: Sequence[str], thing_class_ids: Sequence[int],
    class_colors: Sequence[Sequence[int]] | None = None,
) -> tuple[VideoResultWriter, int]:
    """The job's resumable result writer and the frame it starts at: the committed frames are kept; if they are
    not all on disk (damaged results), everything is written afresh from frame 0 with a fresh adapter."""
    start = int((job.checkpoint or {}).get("frames", 0))
    args = (results_dir, job.task, class_names, thing_class_ids)
    fps = fps_fraction(job.video.get("fps"))
    style = {"class_colors": class_colors, "legend": job.legend, "labels": job.labels, "encodings": job.encodings}
    try:
        return VideoResultWriter(*args, fps=fps, resume_from=start, **style), start
    except ValueError as exc:
        log.warning(
            "job results do not match its checkpoint: restarting at frame 0", extra=kv(job=job.id, error=str(exc))
        )
        job.checkpoint = None
        prune_states(results_dir.parent, None)
        return VideoResultWriter(*args, fps=fps, resume_from=0, **style), 0


def restore_adapter(worker: "DeviceWorker", job: "Job", session: StreamSession, job_dir: Path, start: int) -> None:
    """Resuming at frame `start`: load the committed adapter state into the job's stream before its frames (on
    failure, or with the state file gone, adaptation restarts from θ0 at `start`; the log says so)."""
    path = state_path(job_dir, job.checkpoint)
    if start == 0 or path is None:
        return
    try:
        worker.control(session, RESTORE, restore_state(path, start)).result(RESTORE_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - the results stay valid; only the adaptation restarts
        log.warning("job state not restored: adaptation restarts from θ0", extra=kv(job=job.id, error=str(exc)))
