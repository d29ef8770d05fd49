"""End to end: an uploaded MP4 becomes a job on a real uvicorn with the real TTT adapter; progress is visible,
the overlay MP4 is H.264 with the same frame count, COCO-panoptic outputs are there, and finished jobs survive
a restart of the service."""

from __future__ import annotations

import json
import time
from pathlib import Path

import av
import httpx
import pytest

from mask2former_ttt.outputs.legend_strip import strip_width
from mask2former_ttt.segment import segment_video
from model.checkpoint import load_config
from tests.server.svc_helpers import build_tiny_checkpoint, make_clip, running_service

pytestmark = pytest.mark.e2e
FRAMES = 10


def test_upload_job_progress_results_and_restart(tmp_path: Path) -> None:
    ckpt = build_tiny_checkpoint(tmp_path / "ckpt")
    clip = make_clip(tmp_path / "clip.mp4", frames=FRAMES, width=160)
    with running_service(tmp_path, ckpt) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        with clip.open("rb") as fh:
            r = http.post("/v1/jobs", files={"file": ("clip.mp4", fh, "video/mp4")}, data={"task": "panoptic"})
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        seen: list[dict] = []
        deadline = time.monotonic() + 120
        while (job := http.get(f"/v1/jobs/{job_id}").json())["state"] not in ("succeeded", "failed"):
            seen.append(job)
            assert time.monotonic() < deadline, job
            time.sleep(0.1)
        assert job["state"] == "succeeded", job
        running = [j for j in seen if j["state"] == "running" and 0 < j["frames_done"] < FRAMES]
        assert running, "progress was never visible while running"
        assert all(j["frames_total"] == FRAMES and j["fps"] > 0 and j["eta_s"] > 0 for j in running)
        assert [j["frames_done"] for j in running] == sorted(j["frames_done"] for j in running)
        assert job["frames_done"] == FRAMES and job["progress"] == 1.0

        overlay = tmp_path / "overlay.mp4"
        overlay.write_bytes(http.get(f"/v1/jobs/{job_id}/results/overlay.mp4").content)
        with av.open(str(overlay)) as c:
            stream = c.streams.video[0]
            assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
            decoded = list(c.decode(stream))
        strip = strip_width(load_config(ckpt).class_names)  # the legend strip beside frames under 240 rows
        assert len(decoded) == FRAMES and (decoded[0].width, decoded[0].height) == (160 + strip, 90)

        lines = [json.loads(x) for x in http.get(f"/v1/jobs/{job_id}/results/results.jsonl").text.splitlines()]
        assert [x["frame_index"] for x in lines] == list(range(FRAMES))
        assert all(x["png"].startswith("panoptic/") for x in lines)
        # pipelined default preset: each frame reports the step taken before its prediction (none before frame 0)
        assert [x["ttt"]["loss"] is not None for x in lines] == [False] + [True] * (FRAMES - 1)
        doc = http.get(f"/v1/jobs/{job_id}/results/panoptic.json").json()
        assert len(doc["images"]) == len(doc["annotations"]) == FRAMES and len(doc["categories"]) == 19
        assert http.get(f"/v1/jobs/{job_id}/results/{lines[-1]['png']}").content[:4] == b"\x89PNG"

    # `m2f-ttt segment` on the same clip writes the same layout, and the same adaptation (same method, seed, frames)
    segment_video(clip, tmp_path / "segment", task="panoptic", model_dir=ckpt, device="cpu", progress=False)
    offline = [json.loads(x) for x in (tmp_path / "segment" / "results.jsonl").read_text().splitlines()]
    assert [sorted(x) for x in offline] == [sorted(x) for x in lines]
    assert [x["ttt"] for x in offline] == [x["ttt"] for x in lines]
    assert [x["segments_info"] for x in offline] == [x["segments_info"] for x in lines]

    # a new process on the same jobs dir still knows the job and serves its files
    with running_service(tmp_path, ckpt) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        job = http.get(f"/v1/jobs/{job_id}").json()
        assert job["state"] == "succeeded" and job["frames_done"] == FRAMES
        assert http.get(f"/v1/jobs/{job_id}/results/overlay.mp4").content == overlay.read_bytes()
        assert http.delete(f"/v1/jobs/{job_id}").status_code == 204
        assert http.get("/v1/jobs").json()["jobs"] == []
