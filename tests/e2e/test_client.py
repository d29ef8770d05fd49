"""End to end: the Python client (`mask2former_ttt.client`) against a real service (uvicorn in a thread on a free
127.0.0.1 port, real TTT adapters on a tiny checkpoint): streaming with back-pressure, auth in the start message,
capacity errors, upload jobs and their downloads, camera errors."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest
from websockets.sync.client import ClientConnection

from mask2former_ttt.client import AuthError, CapacityError, Client, ClientError, JobFailedError, NotFoundError, decode_masks
from mask2former_ttt.client import jobs as jobs_module
from mask2former_ttt.client import stream as stream_module
from tests.server.svc_helpers import build_tiny_checkpoint, make_clip, running_service, video_jpegs

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]
FRAMES = 4


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("client-ckpt"))


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, ckpt: Path):
    with running_service(tmp_path_factory.mktemp("client-svc"), ckpt) as server:
        yield server


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("client-clip") / "clip.mp4", frames=FRAMES, width=160)


def test_stream_a_clip_yields_one_result_per_frame_in_order_with_decodable_masks(service, clip: Path) -> None:
    with Client(service.url) as client:
        stream = client.stream(clip, task="panoptic", preset="fast", encodings=["png", "rle"])
        results = list(stream)
    assert [r["frame_id"] for r in results] == list(range(FRAMES))
    assert stream.summary is not None and not stream.errors
    assert (stream.summary["processed"], stream.summary["dropped"]) == (FRAMES, 0)
    for result in results:
        masks = decode_masks(result)
        assert masks["png"].shape == (result["height"], result["width"]) == (90, 160)
        assert masks["rle"].shape == (len(result["segments_info"]), 90, 160) and masks["rle"].dtype == bool
        ids = {s["id"] for s in result["segments_info"]}
        assert set(np.unique(masks["png"]).tolist()) - {0} <= ids  # the PNG holds the listed segments' ids


def test_stream_never_has_more_than_max_in_flight_frames_unanswered(service, monkeypatch) -> None:
    lock, counts, peaks = threading.Lock(), {"sent": 0, "answered": 0}, []
    send, recv = ClientConnection.send, ClientConnection.recv

    def counting_send(self, message, *args, **kwargs):
        if isinstance(message, bytes):
            with lock:
                counts["sent"] += 1
                peaks.append(counts["sent"] - counts["answered"])
        return send(self, message, *args, **kwargs)

    def counting_recv(self, *args, **kwargs):
        message = recv(self, *args, **kwargs)
        if '"type": "result"' in message:
            with lock:
                counts["answered"] += 1
        return message

    monkeypatch.setattr(ClientConnection, "send", counting_send)
    monkeypatch.setattr(ClientConnection, "recv", counting_recv)
    frames = video_jpegs("bigbuckbunny.mp4", 6)
    with Client(service.url) as client:
        results = list(client.stream(frames, preset="fast", max_in_flight=2))
    assert [r["frame_id"] for r in results] == list(range(6)) and counts["sent"] == 6
    assert max(peaks) == 2, peaks  # pipelined up to the limit, never beyond


def test_a_per_frame_error_is_recorded_and_frees_its_slot(service) -> None:
    good = video_jpegs("bigbuckbunny.mp4", 2)
    frames = [good[0], b"\xff\xd8\xff" + b"not really a jpeg", good[1]]
    with Client(service.url) as client:
        stream = client.stream(frames, preset="fast", max_in_flight=1, timeout_s=30)
        results = list(stream)
    assert [r["frame_id"] for r in results] == [0, 2]
    assert [(e["code"], e["frame_id"]) for e in stream.errors] == [("bad_image", 1)]


def test_submit_job_waits_and_download_writes_every_result(service, clip: Path, tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.WARNING)
    with Client(service.url) as client:
        job = client.submit_job(clip, task="panoptic", preset="fast", progress=True, timeout_s=120)
        paths = client.download(job["id"], tmp_path / "out")
    assert job["state"] == "succeeded" and job["frames_done"] == FRAMES
    files = [name for name in job["results"] if not name.endswith("/")]
    folders = [name for name in job["results"] if name.endswith("/")]
    assert files and "results.jsonl" in files and folders == ["panoptic/"]
    with httpx.Client(base_url=service.url) as http:
        for name in files:
            assert (tmp_path / "out" / name).read_bytes() == http.get(f"/v1/jobs/{job['id']}/results/{name}").content
        has_archive = http.get(f"/v1/jobs/{job['id']}/archive").status_code == 200
        pngs = [f"panoptic/{i:06d}.png" for i in range(FRAMES)]
        for name in pngs if has_archive else []:
            assert (tmp_path / "out" / name).read_bytes() == http.get(f"/v1/jobs/{job['id']}/results/{name}").content
    on_disk = sorted(p.relative_to(tmp_path / "out").as_posix() for p in paths)
    assert on_disk == sorted(files + (pngs if has_archive else [])), on_disk
    assert has_archive or "skipped ['panoptic/']" in caplog.text


def test_a_refused_upload_is_a_client_error_naming_the_problem(service, tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 10)
    with Client(service.url) as client, pytest.raises(ClientError, match="HTTP 415: not_video") as info:
        client.submit_job(text, progress=False)
    assert info.value.code == "http_415"


def test_waiting_for_a_failed_job_raises_job_failed_with_its_error() -> None:
    failed = {"id": "j1", "state": "failed", "error": "adapter exploded", "frames_done": 1, "frames_total": 4}
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=failed))
    with httpx.Client(transport=transport, base_url="http://service") as http:
        with pytest.raises(JobFailedError, match="job j1 failed: adapter exploded") as info:
            jobs_module.wait(http, "j1", progress=False)
    assert info.value.job == failed


def test_unknown_camera_is_a_not_found_error(service) -> None:
    with Client(service.url) as client, pytest.raises(NotFoundError, match="no stream 'nope'"):
        next(client.camera_results("nope"))


def test_api_key_travels_in_the_start_message_and_a_wrong_one_is_refused(tmp_path: Path, ckpt: Path,
                                                                          monkeypatch) -> None:
    urls: list[str] = []
    connect = stream_module.connect
    monkeypatch.setattr(stream_module, "connect", lambda url, **kw: urls.append(url) or connect(url, **kw))
    frames = video_jpegs("bigbuckbunny.mp4", 1)
    with running_service(tmp_path, ckpt, api_keys=["right-key"]) as server:
        with pytest.raises(AuthError, match="unauthorized: missing or invalid API key"):
            Client(server.url, api_key="wrong-key").stream(frames, preset="fast").open()
        with Client(server.url, api_key="right-key") as client:
            results = list(client.stream(frames, preset="fast"))
    assert [r["frame_id"] for r in results] == [0]
    assert urls and not any("key" in url for url in urls), urls


def test_a_full_service_raises_capacity_error_with_the_server_message(tmp_path: Path, ckpt: Path) -> None:
    frames = video_jpegs("bigbuckbunny.mp4", 1)
    with running_service(tmp_path, ckpt, streams_max=1) as server, Client(server.url) as client:
        with client.stream(frames, preset="fast") as first:
            with pytest.raises(CapacityError, match="the service is full: 1 of 1 streams") as info:
                client.stream(frames, preset="fast").open()
            assert info.value.close_code == 1013 and info.value.code == "capacity"
            assert [r["frame_id"] for r in first] == [0]
