"""Interrupted upload jobs resume at their last committed frame: a clean shutdown commits every frame it finished,
the next start continues from there with the adapter state saved with those frames, and the results hold every
frame exactly once (results.jsonl, PNGs, overlay.mp4)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import av
import pytest

from mask2former_ttt.outputs.writer import OVERLAY_PARTS
from server.jobs.store import Job
from tests.server.svc_helpers import fake_factory, make_client, make_clip
from tests.server.test_api_jobs import upload, wait_job

FRAMES = 30


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "long.mp4", frames=FRAMES, width=64)


def stop_mid_job(tmp_path: Path, ckpt: Path, clip: Path, task: str, **settings: object) -> str:
    """Upload, let some frames finish, shut the service down; returns the job id."""
    with make_client(tmp_path, ckpt, factory=fake_factory(delay_s=0.05), **settings) as client:
        job_id = upload(client, clip.read_bytes(), task=task).json()["id"]
        deadline = time.monotonic() + 30
        while client.get(f"/v1/jobs/{job_id}").json()["frames_done"] < 5:
            assert time.monotonic() < deadline
            time.sleep(0.02)
    return job_id


def _read(tmp_path: Path, job_id: str) -> Job:
    return Job.model_validate_json((tmp_path / "jobs" / job_id / "job.json").read_text())


@pytest.mark.parametrize("task", ["semantic", "panoptic"])
def test_a_shutdown_mid_job_resumes_at_frames_done_with_every_frame_once(
    tmp_path: Path, tiny_checkpoint: Path, long_clip: Path, task: str
) -> None:
    job_id = stop_mid_job(tmp_path, tiny_checkpoint, long_clip, task, jobs_checkpoint_s=0.2)
    stopped = _read(tmp_path, job_id)
    done = stopped.frames_done
    assert stopped.state == "queued" and 5 <= done < FRAMES, stopped
    assert stopped.checkpoint is not None and stopped.checkpoint["frames"] == done  # nothing finished is lost
    assert f"resumes at frame {done}" in stopped.message
    results = tmp_path / "jobs" / job_id / "results"
    kept = (results / "results.jsonl").read_text().splitlines()
    assert len(kept) == done

    created: list = []
    with make_client(tmp_path, tiny_checkpoint, factory=fake_factory(created=created)) as client:
        job = wait_job(client, job_id)
        assert job["state"] == "succeeded" and job["frames_done"] == job["frames_total"] == FRAMES, job
        assert job["checkpoint"]["frames"] == FRAMES
        lines = client.get(f"/v1/jobs/{job_id}/results/results.jsonl").text.splitlines()
        overlay = client.get(f"/v1/jobs/{job_id}/results/overlay.mp4").content
    records = [json.loads(x) for x in lines]
    assert [r["frame_index"] for r in records] == list(range(FRAMES))  # every frame exactly once
    assert lines[:done] == kept  # the frames finished before the shutdown were not redone
    # the adapter continued from its saved state: the fake's loss is 1 / (frames it has adapted on)
    assert [r["ttt"]["loss"] for r in records] == pytest.approx([1 / (i + 1) for i in range(FRAMES)])
    (adapter,) = created
    assert len(adapter.seen) == FRAMES and adapter.seen[:done] == [0.0] * done  # restored, then FRAMES - done steps
    out = tmp_path / "overlay.mp4"
    out.write_bytes(overlay)
    with av.open(str(out)) as c:
        assert sum(1 for _ in c.decode(video=0)) == FRAMES
    assert not (results / OVERLAY_PARTS).exists() and not list((tmp_path / "jobs" / job_id).glob("state-*.pt"))
    if task == "panoptic":
        doc = json.loads((results / "panoptic.json").read_text())
        assert [im["id"] for im in doc["images"]] == list(range(FRAMES)) and len(doc["annotations"]) == FRAMES


def test_a_crash_resumes_at_the_last_checkpoint_and_drops_what_came_after(
    tmp_path: Path, tiny_checkpoint: Path, long_clip: Path
) -> None:
    """What a SIGKILL leaves: job.json `running` at checkpoint N, results written past N, an overlay part cut off.
    The restart keeps frames [0, N), drops the rest and writes each frame once."""
    job_id = stop_mid_job(tmp_path, tiny_checkpoint, long_clip, "semantic", jobs_checkpoint_s=0.2)
    job_dir = tmp_path / "jobs" / job_id
    job = _read(tmp_path, job_id)
    done = job.frames_done
    results = job_dir / "results"
    with (results / "results.jsonl").open("a") as fh:  # frames after the checkpoint, the last one cut short
        fh.write('{"frame_index": %d, "junk": true}\n{"frame_ind' % done)
    (results / OVERLAY_PARTS / f"{done:06d}.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom")  # unfinished part
    job.state = "running"
    (job_dir / "job.json").write_text(job.model_dump_json())

    with make_client(tmp_path, tiny_checkpoint) as client:
        final = wait_job(client, job_id)
        assert final["state"] == "succeeded", final
        lines = client.get(f"/v1/jobs/{job_id}/results/results.jsonl").text.splitlines()
        overlay = client.get(f"/v1/jobs/{job_id}/results/overlay.mp4").content
    assert [json.loads(x)["frame_index"] for x in lines] == list(range(FRAMES))
    assert all("junk" not in x for x in lines)
    out = tmp_path / "overlay.mp4"
    out.write_bytes(overlay)
    with av.open(str(out)) as c:
        assert sum(1 for _ in c.decode(video=0)) == FRAMES
