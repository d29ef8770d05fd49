"""`POST /v1/streams/test` tries a camera URL once: ok with the stream's format, or why not (the reason as the
caller may see it); the camera address policy applies; each key has a small budget of probes."""

from __future__ import annotations

from pathlib import Path

import pytest

from server import rtsp_streams
from server.routers.streams_probe import PROBE_BURST
from tests.e2e.conftest_rtsp import free_port
from tests.server.svc_helpers import make_client
from tests.server.test_api_rtsp import factory

KEYS = dict(api_keys="tenant,other", api_admin_keys="admin")


@pytest.fixture(autouse=True)
def fast_cameras(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rtsp_streams, "CAMERA_OPEN_TIMEOUT_S", 1.0)
    monkeypatch.setattr(rtsp_streams, "CAMERA_STALL_TIMEOUT_S", 1.0)


def test_a_closed_loopback_port_answers_connection_refused(tmp_path: Path, tiny_checkpoint: Path) -> None:
    port = free_port()
    with make_client(tmp_path, tiny_checkpoint) as client:
        r = client.post("/v1/streams/test", json={"url": f"rtsp://127.0.0.1:{port}/cam"})
        assert r.status_code == 200, r.text
        assert r.json()["ok"] is False
        assert f"connection refused by 127.0.0.1:{port}" in r.json()["reason"], r.json()
        assert client.get("/v1/streams").json()["streams"] == []  # a probe registers nothing


def test_a_tenant_key_gets_the_generic_reason(tmp_path: Path, tiny_checkpoint: Path) -> None:
    url = f"rtsp://127.0.0.1:{free_port()}/cam"
    with make_client(tmp_path, tiny_checkpoint, **KEYS) as client:
        tenant = client.post("/v1/streams/test", json={"url": url}, headers={"X-API-Key": "tenant"}).json()
        admin = client.post("/v1/streams/test", json={"url": url}, headers={"X-API-Key": "admin"}).json()
    assert tenant == {**tenant, "ok": False, "reason": "camera unavailable (1 failed connection attempt)"}
    assert "connection refused by 127.0.0.1" in admin["reason"]


def test_a_working_camera_is_ok_with_its_format(tmp_path: Path, tiny_checkpoint: Path) -> None:
    with make_client(tmp_path, tiny_checkpoint, source_factory=factory(frames=0)) as client:
        r = client.post("/v1/streams/test", json={"url": "rtsp://127.0.0.1:8554/cam"})
    assert r.json() == {"ok": True, "reason": None, "codec": "h264", "width": 64, "height": 48, "fps": 10.0}


def test_the_camera_address_policy_applies(tmp_path: Path, tiny_checkpoint: Path) -> None:
    with make_client(tmp_path, tiny_checkpoint) as client:
        probe = client.post("/v1/streams/test", json={"url": "rtsp://10.1.2.3/cam"})
        register = client.post("/v1/streams", json={"url": "rtsp://10.1.2.3/cam"})
    assert probe.status_code == register.status_code == 400
    assert probe.json()["detail"] == register.json()["detail"]


def test_probes_are_rate_limited_per_key(tmp_path: Path, tiny_checkpoint: Path) -> None:
    refused = {"url": "http://127.0.0.1/cam"}  # refused at once: only the budget is exercised
    with make_client(tmp_path, tiny_checkpoint, **KEYS) as client:
        codes = [client.post("/v1/streams/test", json=refused, headers={"X-API-Key": "tenant"}).status_code
                 for _ in range(PROBE_BURST + 1)]
        assert codes == [400] * PROBE_BURST + [429]
        limited = client.post("/v1/streams/test", json=refused, headers={"X-API-Key": "tenant"})
        assert int(limited.headers["retry-after"]) >= 1 and "camera probes a minute" in limited.json()["detail"]
        other = client.post("/v1/streams/test", json=refused, headers={"X-API-Key": "other"})
        assert other.status_code == 400  # another key has its own budget


def test_the_probe_path_allows_only_post(tmp_path: Path, tiny_checkpoint: Path) -> None:
    with make_client(tmp_path, tiny_checkpoint) as client:
        r = client.put("/v1/streams/test", json={"url": "rtsp://127.0.0.1/cam"})
        assert r.status_code == 405 and r.headers["allow"] == "POST"  # not /v1/streams/{stream_id}'s GET, DELETE
        assert client.put("/v1/streams/abc123").headers["allow"] == "DELETE, GET"
