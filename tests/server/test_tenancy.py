"""Two API keys on one service: each key's jobs, camera streams and checkpoints are invisible to the other (404,
never 403, so ids do not leak), an admin key sees everything, per-key stream limits, and keys stay out of logs."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from server.auth import key_id
from server.logging_setup import KeyValueFormatter
from tests.server.svc_helpers import make_client, make_clip
from tests.server.test_api_jobs import upload, wait_job
from tests.server.test_api_rtsp import factory, wait_for

A = {"X-API-Key": "key-A-secret"}
B = {"X-API-Key": "key-B-secret"}
ADMIN = {"X-API-Key": "root-secret"}


def _client(tmp_path: Path, checkpoint: Path, **settings):
    settings.setdefault("api_keys", "key-A-secret,key-B-secret")
    settings.setdefault("api_admin_keys", "root-secret")
    return make_client(tmp_path, checkpoint, source_factory=factory(frames=2), **settings)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", frames=3, width=64)


def test_jobs_are_private_to_their_key(tmp_path: Path, tiny_checkpoint: Path, clip: Path) -> None:
    with _client(tmp_path, tiny_checkpoint) as client:
        client.headers.update(A)
        r = upload(client, clip.read_bytes())
        assert r.status_code == 202, r.text
        job = wait_job(client, r.json()["id"])
        assert job["state"] == "succeeded" and job["owner"] == key_id("key-A-secret")
        assert "key-A-secret" not in r.text
        jid = job["id"]
        client.headers.update(B)
        assert client.get("/v1/jobs").json()["jobs"] == []
        assert client.get(f"/v1/jobs/{jid}").status_code == 404
        assert client.get(f"/v1/jobs/{jid}/results/results.jsonl").status_code == 404
        assert client.delete(f"/v1/jobs/{jid}").status_code == 404
        client.headers.update(ADMIN)
        assert [j["id"] for j in client.get("/v1/jobs").json()["jobs"]] == [jid]
        client.headers.update(A)
        assert client.get(f"/v1/jobs/{jid}/results/results.jsonl").status_code == 200
        assert client.delete(f"/v1/jobs/{jid}").status_code == 204


def _camera(client, headers) -> str:
    r = client.post("/v1/streams", json={"url": "rtsp://127.0.0.1:8554/cam"}, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_camera_streams_and_checkpoints_are_private(tmp_path: Path, tiny_checkpoint: Path) -> None:
    with _client(tmp_path, tiny_checkpoint, rtsp_allowed_hosts="127.0.0.1") as client:
        sid = _camera(client, A)
        ckpt = client.post(f"/v1/streams/{sid}/checkpoint", headers=A)
        assert ckpt.status_code == 201, ckpt.text
        cid = ckpt.json()["checkpoint_id"]
        other = _camera(client, B)
        # B sees none of A's stream ...
        assert [s["id"] for s in client.get("/v1/streams", headers=B).json()["streams"]] == [other]
        for method, path in [
            ("get", f"/v1/streams/{sid}"),
            ("post", f"/v1/streams/{sid}/reset"),
            ("post", f"/v1/streams/{sid}/checkpoint"),
            ("delete", f"/v1/streams/{sid}"),
        ]:
            assert getattr(client, method)(path, headers=B).status_code == 404, path
        with client.websocket_connect(f"/v1/streams/{sid}/results", headers=B) as ws:
            assert ws.receive_json()["code"] == "not_found"
        # ... nor its checkpoints: restoring into B's own stream, listing, deleting -> 404
        r = client.post(f"/v1/streams/{other}/restore", json={"checkpoint_id": cid}, headers=B)
        assert r.status_code == 404, r.text
        assert client.get("/v1/checkpoints", headers=B).json()["checkpoints"] == []
        assert client.delete(f"/v1/checkpoints/{cid}", headers=B).status_code == 404
        # the owner and the admin can
        assert [c["checkpoint_id"] for c in client.get("/v1/checkpoints", headers=A).json()["checkpoints"]] == [cid]
        r = client.post(f"/v1/streams/{sid}/restore", json={"checkpoint_id": cid}, headers=A)
        assert r.status_code == 200, r.text
        assert {s["id"] for s in client.get("/v1/streams", headers=ADMIN).json()["streams"]} == {sid, other}
        assert client.get(f"/v1/streams/{sid}", headers=ADMIN).status_code == 200
        assert client.delete(f"/v1/checkpoints/{cid}", headers=A).status_code == 204
        assert client.get("/v1/checkpoints", headers=A).json()["checkpoints"] == []


def test_results_socket_takes_the_key_in_its_first_message(tmp_path: Path, tiny_checkpoint: Path) -> None:
    with _client(tmp_path, tiny_checkpoint, rtsp_allowed_hosts="127.0.0.1") as client:
        sid = _camera(client, A)
        with client.websocket_connect(f"/v1/streams/{sid}/results") as ws:
            ws.send_json({"type": "auth", "api_key": "key-A-secret"})
            assert ws.receive_json()["type"] == "subscribed"
        with client.websocket_connect(f"/v1/streams/{sid}/results") as ws:
            ws.send_json({"type": "auth", "api_key": "key-B-secret"})
            assert ws.receive_json()["code"] == "not_found"
        with client.websocket_connect(f"/v1/streams/{sid}/results") as ws:
            ws.send_json({"type": "auth", "api_key": "wrong"})
            assert ws.receive_json()["code"] == "unauthorized"


def test_per_key_stream_limit(tmp_path: Path, tiny_checkpoint: Path) -> None:
    with _client(tmp_path, tiny_checkpoint, rtsp_allowed_hosts="127.0.0.1", streams_max_per_key=1) as client:
        _camera(client, A)
        r = client.post("/v1/streams", json={"url": "rtsp://127.0.0.1:8554/cam"}, headers=A)
        assert r.status_code == 429 and "M2F_STREAMS_MAX_PER_KEY=1" in r.json()["detail"]
        _camera(client, B)  # the other key is not affected
        with client.websocket_connect("/v1/streams/ws") as ws:
            ws.send_json({"type": "start", "api_key": "key-A-secret"})
            msg = ws.receive_json()
            assert msg["code"] == "quota", msg


def test_checkpoint_quotas_and_cleanup(tmp_path: Path, tiny_checkpoint: Path) -> None:
    states = tmp_path / "states"
    with _client(
        tmp_path, tiny_checkpoint, rtsp_allowed_hosts="127.0.0.1", checkpoint_per_stream=2, checkpoint_retention_s=0
    ) as client:
        sid = _camera(client, A)
        ids = [client.post(f"/v1/streams/{sid}/checkpoint", headers=A).json()["checkpoint_id"] for _ in range(5)]
        listed = [c["checkpoint_id"] for c in client.get("/v1/checkpoints", headers=A).json()["checkpoints"]]
        assert listed == ids[-2:]  # the oldest were evicted
        assert sorted(p.stem for p in states.glob("*.pt")) == sorted(ids[-2:])
        assert client.delete(f"/v1/streams/{sid}", headers=A).status_code == 204
        wait_for(lambda: not list(states.glob("*.pt")))  # retention 0: gone with the stream
        assert client.get("/v1/checkpoints", headers=A).json()["checkpoints"] == []


def test_checkpoint_byte_quota_refuses(tmp_path: Path, tiny_checkpoint: Path) -> None:
    with _client(tmp_path, tiny_checkpoint, rtsp_allowed_hosts="127.0.0.1", checkpoint_bytes_per_key=1) as client:
        sid = _camera(client, A)
        r = client.post(f"/v1/streams/{sid}/checkpoint", headers=A)
        assert r.status_code == 409 and "M2F_CHECKPOINT_BYTES_PER_KEY" in r.json()["detail"], r.text
        assert not list((tmp_path / "states").glob("*.pt"))


def test_keys_never_reach_the_log(caplog: pytest.LogCaptureFixture) -> None:
    """uvicorn logs WebSocket paths with their query; the formatter redacts `api_key=`."""
    record = logging.LogRecord(
        "uvicorn.error", logging.INFO, __file__, 1, '%s - "WebSocket %s" [accepted]',
        ("127.0.0.1:5000", "/v1/streams/ws?api_key=keyA-123&x=1"), None,
    )
    line = KeyValueFormatter().format(record)
    assert "keyA-123" not in line and "api_key=[redacted]" in line


def test_page_sends_the_key_in_the_start_message_not_the_url() -> None:
    js = (Path(__file__).resolve().parents[2] / "server" / "static" / "app.js").read_text()
    assert "?api_key=" not in js and "start.api_key = key" in js
