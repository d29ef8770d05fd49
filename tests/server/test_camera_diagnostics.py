"""A camera's failure reason reaches those who may see it: the owner on a server without API keys and admin keys
always; tenant keys of a multi-tenant server get the generic "camera unavailable" text (no port-scan oracle)."""

from __future__ import annotations

from pathlib import Path

import pytest

from server import rtsp_streams
from tests.e2e.conftest_rtsp import free_port
from tests.server.svc_helpers import make_client
from tests.server.test_api_rtsp import ScriptedSource, factory, wait_for

TENANT, OTHER, ADMIN = {"X-API-Key": "tenant"}, {"X-API-Key": "other"}, {"X-API-Key": "admin"}
KEYS = dict(api_keys="tenant,other", api_admin_keys="admin")
GENERIC = "camera unavailable (1 failed connection attempt)"


@pytest.fixture(autouse=True)
def fast_cameras(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rtsp_streams, "CAMERA_OPEN_TIMEOUT_S", 1.0)
    monkeypatch.setattr(rtsp_streams, "CAMERA_STALL_TIMEOUT_S", 1.0)


def _failed(client, sid: str, headers: dict | None = None) -> dict:
    wait_for(lambda: client.get(f"/v1/streams/{sid}", headers=headers).json()["state"] == "failed", timeout=20)
    return client.get(f"/v1/streams/{sid}", headers=headers).json()


def test_without_api_keys_the_owner_sees_why_the_camera_failed(tmp_path: Path, tiny_checkpoint: Path) -> None:
    port = free_port()
    with make_client(tmp_path, tiny_checkpoint, rtsp_retry_for_s=1e-6) as client:
        sid = client.post("/v1/streams", json={"url": f"rtsp://127.0.0.1:{port}/cam"}).json()["id"]
        info = _failed(client, sid)
        assert f"connection refused by 127.0.0.1:{port}" in info["last_error"], info
        assert client.get("/v1/streams").json()["streams"][0]["last_error"] == info["last_error"]
        with client.websocket_connect(f"/v1/streams/{sid}/results") as ws:
            assert ws.receive_json()["message"] == info["last_error"]


def test_tenant_keys_see_the_generic_text_and_admin_keys_the_reason(tmp_path: Path, tiny_checkpoint: Path) -> None:
    port = free_port()
    with make_client(tmp_path, tiny_checkpoint, rtsp_retry_for_s=1e-6, **KEYS) as client:
        created = client.post("/v1/streams", json={"url": f"rtsp://127.0.0.1:{port}/cam"}, headers=TENANT)
        sid = created.json()["id"]
        assert _failed(client, sid, TENANT)["last_error"] == GENERIC
        assert f"connection refused by 127.0.0.1:{port}" in _failed(client, sid, ADMIN)["last_error"]
        assert client.get(f"/v1/streams/{sid}", headers=OTHER).status_code == 404
        with client.websocket_connect(f"/v1/streams/{sid}/results", headers=TENANT) as ws:
            assert ws.receive_json()["message"] == GENERIC


@pytest.mark.parametrize("keys, watcher, expected", [
    ({}, None, "connection refused by 127.0.0.1:9"),
    (KEYS, ADMIN, "connection refused by 127.0.0.1:9"),
    (KEYS, TENANT, "camera unavailable (0 failed connection attempts)"),
])
def test_a_watchers_failure_message_is_the_one_it_may_see(
    tmp_path: Path, tiny_checkpoint: Path, keys: dict, watcher: dict | None, expected: str
) -> None:
    source = factory(frames=0, fail_after=True)
    with make_client(tmp_path, tiny_checkpoint, source_factory=source, **keys) as client:
        sid = client.post("/v1/streams", json={"url": "rtsp://127.0.0.1:9/cam"}, headers=TENANT).json()["id"]
        with client.websocket_connect(f"/v1/streams/{sid}/results", headers=watcher or {}) as ws:
            assert ws.receive_json()["type"] == "subscribed"
            ScriptedSource.instances[-1].go.set()  # the camera fails while watched
            states = []
            while not states or states[-1]["state"] != "failed":
                msg = ws.receive_json()
                if msg["type"] == "state":
                    states.append(msg)
        assert states[-1]["last_error"] == expected
        assert all("_diagnosis" not in m for m in states)
