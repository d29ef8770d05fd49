"""On-disk job index: `jobs_dir/<id>/job.json` (+ `input.*` and `results/`). Reloaded at start-up."""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from model.config import Task
from mask2former_ttt.outputs.legend_strip import LegendMode
from server.logging_setup import kv

log = logging.getLogger(__name__)

JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL = ("succeeded", "failed", "cancelled")
JOB_FILE = "job.json"
RESULTS = "results"


class Job(BaseModel):
    """A job's record (also its API representation)."""

    id: str
    owner: str = Field("", description="id of the API key that created the job (never the key); '' with auth off")
    state: JobState = "queued"
    task: Task
    method: str
    preset: str
    filename: str
    size_bytes: int
    video: dict = Field(
        default_factory=dict, description="probe result: container, codec, width, height, fps, frames, duration_s"
    )
    frames_total: int = 0
    frames_done: int = 0
    fps: float | None = Field(None, description="frames processed per second")
    eta_s: float | None = None
    message: str | None = None
    error: str | None = None
    results: list[str] = Field(default_factory=list)
    score_threshold: float = Field(0.0, description="instances / panoptic segments scoring less are dropped")
    min_area: int = Field(0, description="instances / panoptic segments with fewer pixels are dropped")
    webhook_url: str | None = Field(None, description="called (signed POST) when the job ends; docs/security.md")
    legend: LegendMode = Field(
        "auto", description="overlay.mp4's class legend: auto (in the frame from 240 rows, else a strip beside it) | "
        "always (a strip beside every frame) | never"
    )
    labels: bool = Field(True, description="overlay.mp4 labels each instance 'class #id score'")
    encodings: list[Literal["rle", "polygons"]] = Field(
        default_factory=list, description="encodings results.jsonl adds to each frame's record (`rle`, `polygons`)"
    )
    checkpoint: dict | None = Field(
        None,
        description="last commit: `frames` whose results are on disk for good and the adapter `state` file saved "
        "with them; an interrupted job resumes there",
    )
    created: float = Field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None

    def public(self) -> dict:
        """The API representation: the record plus `progress` (frames_done / frames_total)."""
        progress = self.frames_done / self.frames_total if self.frames_total else 0.0
        return {**self.model_dump(), "progress": round(progress, 4)}


class JobStore:
    """Thread-safe map of jobs backed by one JSON file per job (atomic replace on every save)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex[:16]

    def job_dir(self, job_id: str) -> Path:
        return self.root / job_id

    def results_dir(self, job_id: str) -> Path:
        return self.job_dir(job_id) / RESULTS

    def load(self) -> list[str]:
        """Read every job.json. Jobs that were running when the service stopped (a crash: a clean shutdown has
        already put them back) are queued again to resume at their last checkpoint. Returns the ids of the queued
        jobs (to be re-enqueued), oldest first."""
        requeue: list[Job] = []
        for path in sorted(self.root.glob(f"*/{JOB_FILE}")):
            try:
                job = Job.model_validate_json(path.read_text())
            except (OSError, ValueError) as exc:
                log.warning("unreadable job record skipped", extra=kv(path=str(path), error=str(exc)))
                continue
            if job.state == "running":
                frames = int((job.checkpoint or {}).get("frames", 0))
                job.state, job.started, job.frames_done, job.fps, job.eta_s = "queued", None, frames, None, None
                job.message = f"interrupted by a service restart; it resumes at frame {frames}"
                self.save(job)
            if job.state == "queued":
                requeue.append(job)
            self.jobs[job.id] = job
        log.info("job index loaded", extra=kv(jobs=len(self.jobs), requeued=len(requeue)))
        return [j.id for j in sorted(requeue, key=lambda j: j.created)]

    def save(self, job: Job) -> None:
        with self._lock:
            self.jobs[job.id] = job
            directory = self.job_dir(job.id)
            if not directory.is_dir():  # deleted meanwhile
                return
            tmp = directory / f".{JOB_FILE}.tmp"
            tmp.write_text(json.dumps(job.model_dump()))
            os.replace(tmp, directory / JOB_FILE)

    def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def delete(self, job_id: str) -> None:
        with self._lock:
            self.jobs.pop(job_id, None)
            shutil.rmtree(self.job_dir(job_id), ignore_errors=True)
