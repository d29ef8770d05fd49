"""Upload job limits (frames, pixels per frame, checked at upload and again while decoding), the per-key queue cap,
and fair bounded concurrency: keys take turns, one key's jobs cannot hold every slot."""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from server.jobs.fair_queue import FairJobQueue
from server.jobs.store import Job, JobStore
from tests.server.svc_helpers import fake_factory, make_client, make_clip
from tests.server.test_api_jobs import upload, wait_job

KEYS = ["key-a", "key-b"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", frames=6, width=96)  # 96x54, 6 frames


def gated_factory(gate: threading.Event, entered: threading.Event, delay_s: float = 0.0) -> Callable[..., Any]:
    """A fake adapter factory whose first call (the first job's admission) waits for `gate`."""
    base, calls = fake_factory(delay_s=delay_s), itertools.count()

    def factory(*args: Any) -> Any:
        if next(calls) == 0:
            entered.set()
            assert gate.wait(60), "the test never opened the gate"
        return base(*args)

    return factory


def wait_until(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def as_key(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


# ---- limits at upload ---------------------------------------------------------------------------------------------
def test_a_video_with_too_many_frames_is_refused_naming_the_limit(tmp_path: Path, tiny_checkpoint: Path, clip: Path) -> None:
    with make_client(tmp_path, tiny_checkpoint, upload_max_frames=5) as client:
        r = upload(client, clip.read_bytes())
        assert r.status_code == 422, r.text
        detail = r.json()["detail"]
        assert "too_many_frames" in detail and "6 frames" in detail and "limit is 5" in detail
        assert client.get("/v1/jobs").json()["jobs"] == [] and list((tmp_path / "jobs").iterdir()) == []


def test_a_video_with_too_large_frames_is_refused_naming_the_limit(tmp_path: Path, tiny_checkpoint: Path, clip: Path) -> None:
    with make_client(tmp_path, tiny_checkpoint, upload_max_pixels=96 * 54 - 1) as client:
        r = upload(client, clip.read_bytes())
        assert r.status_code == 422, r.text
        detail = r.json()["detail"]
        assert "too_large" in detail and "96x54 = 5184 pixels" in detail and f"limit is {96 * 54 - 1}" in detail


def test_the_defaults_refuse_the_reported_long_upload() -> None:
    """The issue's file: 590 s at 120 fps = 70,800 frames; the default frame limit refuses it."""
    from server.settings import Settings

    s = Settings()
    assert s.upload.max_frames < 70_800
    assert s.upload.max_pixels <= s.streams.max_frame_pixels and s.upload.max_pixels < 8000 * 8000


# ---- limits while decoding (a container header that lies) -----------------------------------------------------
@pytest.mark.parametrize(
    ("limits", "needle"),
    [({"upload_max_frames": 4}, "more than 4 frames"), ({"upload_max_pixels": 5000}, "5184 pixels")],
)
def test_decoding_stops_when_the_stream_passes_a_limit_its_header_hid(
    tmp_path: Path, tiny_checkpoint: Path, clip: Path, limits: dict, needle: str
) -> None:
    """A job accepted on a header that said 4 frames of 64x36 (written here as the probe would have) fails as soon
    as the decoded stream passes the caps, instead of decoding whatever the file holds."""
    store = JobStore(tmp_path / "jobs")
    store.job_dir("liar").mkdir()
    (store.job_dir("liar") / "input.mp4").write_bytes(clip.read_bytes())
    video = {"fps": 25.0, "frames": 4, "width": 64, "height": 36}
    store.save(
        Job(id="liar", task="semantic", method="online", preset="default", filename="liar.mp4", size_bytes=1,
            video=video, frames_total=4)
    )
    with make_client(tmp_path, tiny_checkpoint, **limits) as client:
        job = wait_job(client, "liar")
        assert job["state"] == "failed" and needle in job["error"], job
        assert job["frames_done"] <= 4


# ---- per-key queue cap -------------------------------------------------------------------------------------------
def test_a_key_beyond_its_queued_jobs_cap_gets_429(tmp_path: Path, tiny_checkpoint: Path, clip: Path) -> None:
    gate, entered = threading.Event(), threading.Event()
    settings = dict(api_keys=KEYS, jobs_max_concurrent=1, jobs_max_queued_per_key=1)
    try:
        with make_client(tmp_path, tiny_checkpoint, factory=gated_factory(gate, entered), **settings) as client:
            data = clip.read_bytes()
            first = client.post("/v1/jobs", files={"file": ("a.mp4", data)}, headers=as_key("key-a"))
            assert first.status_code == 202 and entered.wait(30)  # taken by the runner: no longer waiting
            assert client.post("/v1/jobs", files={"file": ("a.mp4", data)}, headers=as_key("key-a")).status_code == 202
            r = client.post("/v1/jobs", files={"file": ("a.mp4", data)}, headers=as_key("key-a"))
            assert r.status_code == 429, r.text
            assert "1 queued jobs" in r.json()["detail"] and "max_queued_jobs_per_key" in r.json()["detail"]
            other = client.post("/v1/jobs", files={"file": ("b.mp4", data)}, headers=as_key("key-b"))
            assert other.status_code == 202  # the cap is per key
            gate.set()
            for job in client.get("/v1/jobs", headers=as_key("key-a")).json()["jobs"]:
                assert wait_job_as(client, job["id"], "key-a")["state"] == "succeeded"
    finally:
        gate.set()


def wait_job_as(client: Any, job_id: str, key: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/v1/jobs/{job_id}", headers=as_key(key)).json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.05)


# ---- fairness and bounded concurrency ---------------------------------------------------------------------------
def test_keys_take_turns_a_second_keys_job_runs_before_the_first_keys_backlog(
    tmp_path: Path, tiny_checkpoint: Path, clip: Path
) -> None:
    """One slot; key A's first job holds it while A queues two more and B one: B's job goes next, then A's."""
    gate, entered = threading.Event(), threading.Event()
    try:
        with make_client(
            tmp_path, tiny_checkpoint, factory=gated_factory(gate, entered), api_keys=KEYS, jobs_max_concurrent=1
        ) as client:
            data, ids = clip.read_bytes(), {}
            ids["a1"] = client.post("/v1/jobs", files={"file": ("a.mp4", data)}, headers=as_key("key-a")).json()["id"]
            assert entered.wait(30)
            for name, key in (("a2", "key-a"), ("a3", "key-a"), ("b1", "key-b")):
                r = client.post("/v1/jobs", files={"file": ("x.mp4", data)}, headers=as_key(key))
                assert r.status_code == 202, r.text
                ids[name] = r.json()["id"]
            gate.set()
            jobs = {n: wait_job_as(client, i, "key-b" if n == "b1" else "key-a") for n, i in ids.items()}
        assert all(j["state"] == "succeeded" for j in jobs.values()), jobs
        order = sorted(jobs, key=lambda n: jobs[n]["started"])
        assert order == ["a1", "b1", "a2", "a3"], order
    finally:
        gate.set()


def test_one_key_cannot_hold_every_slot(tmp_path: Path, tiny_checkpoint: Path, clip: Path) -> None:
    """Three slots, one job per key at once: while A's first job runs, A's second waits and B's runs to the end."""
    gate, entered = threading.Event(), threading.Event()
    settings = dict(api_keys=KEYS, jobs_max_concurrent=3, jobs_max_per_key=1, worker_lanes=3)
    try:
        with make_client(tmp_path, tiny_checkpoint, factory=gated_factory(gate, entered), **settings) as client:
            data = clip.read_bytes()
            a1 = client.post("/v1/jobs", files={"file": ("a.mp4", data)}, headers=as_key("key-a")).json()["id"]
            assert entered.wait(30)
            a2 = client.post("/v1/jobs", files={"file": ("a.mp4", data)}, headers=as_key("key-a")).json()["id"]
            b1 = client.post("/v1/jobs", files={"file": ("b.mp4", data)}, headers=as_key("key-b")).json()["id"]
            assert wait_job_as(client, b1, "key-b")["state"] == "succeeded"
            assert client.get(f"/v1/jobs/{a2}", headers=as_key("key-a")).json()["state"] == "queued"
            gate.set()
            assert wait_job_as(client, a1, "key-a")["state"] == "succeeded"
            assert wait_job_as(client, a2, "key-a")["state"] == "succeeded"
    finally:
        gate.set()


def test_fair_queue_round_robin_and_per_owner_cap() -> None:
    q = FairJobQueue(max_running_per_owner=2)
    for job, owner in (("a1", "A"), ("a2", "A"), ("a3", "A"), ("b1", "B"), ("c1", "C"), ("b2", "B")):
        q.put(job, owner)
    taken = [q.take(timeout=0)[0] for _ in range(5)]
    assert taken == ["a1", "b1", "c1", "a2", "b2"]
    assert q.take(timeout=0) is None  # A has 2 running: a3 waits for one of them
    q.done("A")
    assert q.take(timeout=0) == ("a3", "A")
    assert q.queued() == 0 and q.running("A") == 2
    q.put("x", "A")
    assert q.remove("x") and not q.remove("x")
    q.close()
    assert q.take() is None
