"""What a camera stream does while nobody subscribes: pause (frames dropped before the worker), run, or record
(results written as segments, downloadable, within a byte budget)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest

from server import rtsp_streams
from tests.server.svc_helpers import make_client
from tests.server.test_api_rtsp import ScriptedSource, factory, wait_for

URL = "rtsp://127.0.0.1:8554/cam"


def _delivered(n: int):
    src = ScriptedSource.instances[-1]
    wait_for(lambda: src.stats.frames == n)


def test_pause_drops_frames_while_nobody_subscribes_and_run_processes_them(tmp_path: Path, tiny_checkpoint: Path) -> None:
    ScriptedSource.instances.clear()
    with make_client(tmp_path, tiny_checkpoint, source_factory=factory(frames=4)) as client:
        paused = client.post("/v1/streams", json={"url": URL, "policy": "block"}).json()
        assert paused["unwatched"] == "pause" and paused["paused"] is True  # the service default
        ScriptedSource.instances[-1].go.set()
        _delivered(4)
        status = client.get(f"/v1/streams/{paused['id']}").json()
        assert (status["processed"], status["paused_frames"]) == (0, 4)

        running = client.post("/v1/streams", json={"url": URL, "policy": "block", "unwatched": "run"}).json()
        assert running["paused"] is False
        ScriptedSource.instances[-1].go.set()
        wait_for(lambda: client.get(f"/v1/streams/{running['id']}").json()["processed"] == 4)
        assert client.get(f"/v1/streams/{running['id']}").json()["paused_frames"] == 0


def test_a_subscriber_unpauses(tmp_path: Path, tiny_checkpoint: Path) -> None:
    ScriptedSource.instances.clear()
    with make_client(tmp_path, tiny_checkpoint, source_factory=factory(frames=3)) as client:
        sid = client.post("/v1/streams", json={"url": URL, "policy": "block"}).json()["id"]
        with client.websocket_connect(f"/v1/streams/{sid}/results") as ws:
            assert ws.receive_json()["paused"] is False  # the `subscribed` status
            ScriptedSource.instances[-1].go.set()
            assert [ws.receive_json()["frame_id"] for _ in range(3)] == [0, 1, 2]
        assert client.get(f"/v1/streams/{sid}").json()["paused_frames"] == 0


def _recording(client, sid: str) -> dict:
    r = client.get(f"/v1/streams/{sid}/recording")
    assert r.status_code == 200, r.text
    return r.json()


def test_record_writes_segments_that_download_as_zips(
    tmp_path: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ScriptedSource.instances.clear()
    monkeypatch.setattr(rtsp_streams, "RECORDING_SEGMENT_FRAMES", 2)
    src_factory = factory(frames=5, fail_after=True)
    with make_client(tmp_path, tiny_checkpoint, source_factory=src_factory) as client:
        sid = client.post("/v1/streams", json={"url": URL, "policy": "block", "unwatched": "record"}).json()["id"]
        ScriptedSource.instances[-1].go.set()
        wait_for(lambda: client.get(f"/v1/streams/{sid}").json()["state"] == "failed")
        # the camera failed: the session closed and its last segment was finished
        wait_for(lambda: all(s["complete"] for s in _recording(client, sid)["segments"]))
        segments = _recording(client, sid)["segments"]
        assert [(s["first_frame"], s["frames"]) for s in segments] == [(0, 2), (2, 2), (4, 1)]
        assert client.get(f"/v1/streams/{sid}").json()["recording"] == {"frames": 5, "segments_deleted": 0}

        r = client.get(segments[1]["archive"])
        assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
        with zipfile.ZipFile(io.BytesIO(r.content)) as archive:
            name = segments[1]["name"]
            assert f"{name}/overlay.mp4" in archive.namelist()
            lines = [json.loads(x) for x in archive.read(f"{name}/results.jsonl").splitlines()]
        assert [x["frame_index"] for x in lines] == [2, 3]
        assert {"segments_info", "ttt", "timings_ms", "frame_id"} <= set(lines[0])

        assert client.get(f"/v1/streams/{sid}/recording/999.zip").status_code == 404
        assert client.delete(f"/v1/streams/{sid}").status_code == 204
        assert not (tmp_path / "recordings" / sid).exists()


def test_record_budget_deletes_the_oldest_segments(
    tmp_path: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ScriptedSource.instances.clear()
    monkeypatch.setattr(rtsp_streams, "RECORDING_SEGMENT_FRAMES", 2)
    with make_client(
        tmp_path, tiny_checkpoint, source_factory=factory(frames=6, fail_after=True), recording_bytes_per_stream=1
    ) as client:
        sid = client.post("/v1/streams", json={"url": URL, "policy": "block", "unwatched": "record"}).json()["id"]
        ScriptedSource.instances[-1].go.set()
        wait_for(lambda: client.get(f"/v1/streams/{sid}").json()["state"] == "failed")
        wait_for(lambda: client.get(f"/v1/streams/{sid}").json()["recording"]["segments_deleted"] == 2)
        listing = _recording(client, sid)
        assert [s["first_frame"] for s in listing["segments"]] == [4]  # the newest is always kept
        assert client.get(f"/v1/streams/{sid}/recording/{0:012d}.zip").status_code == 404


@pytest.mark.parametrize("body", [{"unwatched": "archive"}])
def test_unknown_mode_is_refused(tmp_path: Path, tiny_checkpoint: Path, body: dict) -> None:
    with make_client(tmp_path, tiny_checkpoint, source_factory=factory(frames=1)) as client:
        r = client.post("/v1/streams", json={"url": URL, **body})
        assert r.status_code == 422 and "unwatched" in r.text
        sid = client.post("/v1/streams", json={"url": URL}).json()["id"]
        r = client.get(f"/v1/streams/{sid}/recording")
        assert r.status_code == 404 and "does not record" in r.json()["detail"]


def test_a_recording_is_private_to_its_key(tmp_path: Path, tiny_checkpoint: Path) -> None:
    owner, other = {"X-API-Key": "key-A"}, {"X-API-Key": "key-B"}
    with make_client(
        tmp_path, tiny_checkpoint, source_factory=factory(frames=1), api_keys="key-A,key-B",
        rtsp_allowed_hosts="127.0.0.1",
    ) as client:
        r = client.post("/v1/streams", json={"url": URL, "unwatched": "record"}, headers=owner)
        sid = r.json()["id"]
        assert client.get(f"/v1/streams/{sid}/recording", headers=owner).status_code == 200
        r = client.get(f"/v1/streams/{sid}/recording", headers=other)
        assert r.status_code == 404 and "does not record" not in r.text
        assert client.get(f"/v1/streams/{sid}/recording/{0:012d}.zip", headers=other).status_code == 404
