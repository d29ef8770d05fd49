"""A real `m2f-ttt serve` (subprocess, real TTT) running an upload job: SIGTERM drains it (the job commits the
frames it finished and goes back to `queued`) and the process exits 0; the next start resumes the job there; a
SIGKILL mid-job loses nothing committed; the third start finishes it, every frame written exactly once."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Callable

import av
import httpx
import pytest

from tests.e2e.server_proc import run_service, service_env
from tests.server.svc_helpers import build_tiny_checkpoint, make_clip

pytestmark = pytest.mark.e2e
FRAMES = 24


def job_record(work: Path, job_id: str) -> dict:
    return json.loads((work / "jobs" / job_id / "job.json").read_text())


def poll(check: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_sigterm_drains_jobs_and_exits_0_and_jobs_resume_after_sigterm_and_sigkill(tmp_path: Path) -> None:
    ckpt = build_tiny_checkpoint(tmp_path / "ckpt")
    clip = make_clip(tmp_path / "clip.mp4", frames=FRAMES, width=64)
    env = service_env(ckpt, tmp_path, M2F_WORKER_TORCH_THREADS="1", M2F_JOBS_CHECKPOINT_S="0.5")
    results = tmp_path / "jobs"

    # 1. SIGTERM while the job runs: exit status 0, the job is queued again at the frames it finished
    with run_service(None, env, tmp_path / "serve1.log") as server:
        with clip.open("rb") as fh:
            r = httpx.post(f"{server.url}/v1/jobs", files={"file": ("clip.mp4", fh, "video/mp4")}, timeout=30)
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        poll(lambda: httpx.get(f"{server.url}/v1/jobs/{job_id}").json()["frames_done"] >= 3, "3 frames")
        os.killpg(server.proc.pid, signal.SIGTERM)
        returncode = server.proc.wait(60)
        log = server.log_tail(60)
    assert returncode == 0, log
    assert "service stopped" in log, log
    first = job_record(tmp_path, job_id)
    done1 = first["frames_done"]
    assert first["state"] == "queued" and 3 <= done1 < FRAMES, first
    assert first["checkpoint"]["frames"] == done1
    kept1 = (results / job_id / "results" / "results.jsonl").read_text().splitlines()
    assert len(kept1) == done1

    # 2. the restart resumes at done1; SIGKILL once a later checkpoint is on disk
    with run_service(None, env, tmp_path / "serve2.log") as server:
        poll(
            lambda: (job_record(tmp_path, job_id).get("checkpoint") or {}).get("frames", 0) > done1,
            "a checkpoint after the resume",
        )
        os.killpg(server.proc.pid, signal.SIGKILL)
        server.proc.wait(30)
    crashed = job_record(tmp_path, job_id)
    done2 = crashed["checkpoint"]["frames"]
    assert done1 < done2 and crashed["state"] in ("running", "succeeded"), crashed

    # 3. the next start finishes the job: every frame once, the overlay complete
    with run_service(None, env, tmp_path / "serve3.log") as server, httpx.Client(base_url=server.url) as http:
        poll(lambda: http.get(f"/v1/jobs/{job_id}").json()["state"] in ("succeeded", "failed"), "the job's end")
        job = http.get(f"/v1/jobs/{job_id}").json()
        assert job["state"] == "succeeded" and job["frames_done"] == FRAMES, (job, server.log_tail())
        lines = http.get(f"/v1/jobs/{job_id}/results/results.jsonl").text.splitlines()
        (tmp_path / "overlay.mp4").write_bytes(http.get(f"/v1/jobs/{job_id}/results/overlay.mp4").content)
    assert [json.loads(x)["frame_index"] for x in lines] == list(range(FRAMES))
    assert lines[:done1] == kept1  # committed frames were kept, not redone
    with av.open(str(tmp_path / "overlay.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == FRAMES
