"""A job's results as one ZIP (`GET /v1/jobs/{id}/archive`) and the listed `panoptic/` folder resolving to a listing:
contents, filename, 409 before success, 404 for other keys' jobs."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from server.jobs.store import Job
from tests.server.svc_helpers import make_client, make_clip
from tests.server.test_api_jobs import upload, wait_job

A = {"X-API-Key": "key-A-secret"}
B = {"X-API-Key": "key-B-secret"}


def test_archive_and_folder_listing(tmp_path: Path, tiny_checkpoint: Path) -> None:
    clip = make_clip(tmp_path / "clip.mp4", frames=3, width=64)
    with make_client(tmp_path, tiny_checkpoint, api_keys="key-A-secret,key-B-secret") as client:
        client.headers.update(A)
        job = wait_job(client, upload(client, clip.read_bytes(), task="panoptic").json()["id"])
        jid = job["id"]
        assert job["state"] == "succeeded" and "panoptic/" in job["results"]

        listing = client.get(f"/v1/jobs/{jid}/results/panoptic/")
        assert listing.status_code == 200, listing.text
        body = listing.json()
        assert body == {"folder": "panoptic/", "files": [f"panoptic/{i:06d}.png" for i in range(3)],
                        "archive": f"/v1/jobs/{jid}/archive"}
        assert client.get(f"/v1/jobs/{jid}/results/panoptic").json() == body
        assert client.get(f"/v1/jobs/{jid}/results/{body['files'][0]}").content[:4] == b"\x89PNG"

        r = client.get(f"/v1/jobs/{jid}/archive")
        assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
        assert f'filename="{jid}-results.zip"' in r.headers["content-disposition"]
        archive = zipfile.ZipFile(io.BytesIO(r.content))
        assert archive.testzip() is None
        expected = ["results.jsonl", "overlay.mp4", "panoptic.json", *body["files"]]
        assert sorted(archive.namelist()) == sorted(f"{jid}/{name}" for name in expected)
        on_disk = tmp_path / "jobs" / jid / "results" / "panoptic.json"
        assert archive.read(f"{jid}/panoptic.json") == on_disk.read_bytes()

        assert client.get(f"/v1/jobs/{jid}/archive", headers=B).status_code == 404  # another key: unknown id
        assert client.get(f"/v1/jobs/{jid}/results/panoptic/", headers=B).status_code == 404
        assert client.get("/v1/jobs/0123456789abcdef/archive").status_code == 404


def test_archive_waits_for_success(tmp_path: Path, tiny_checkpoint: Path) -> None:
    with make_client(tmp_path, tiny_checkpoint) as client:
        job = upload(client, b"not a video" * 10)
        assert job.status_code == 415
        store = client.app.state.job_store
        store.job_dir("f00d").mkdir(parents=True)
        store.save(Job(id="f00d", task="semantic", method="online", preset="default", filename="x.mp4",
                       size_bytes=1, state="running"))
        r = client.get("/v1/jobs/f00d/archive")
        assert r.status_code == 409 and "running" in r.json()["detail"]
