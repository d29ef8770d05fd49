"""Camera URLs cannot reach what the allowlist refuses.

* (a) a camera's RTSP redirect is not followed (FFmpeg would follow it after our URL check);
* (b) host names are resolved and every address checked; internal addresses need an explicit entry; the
  connection goes to the checked address (FFmpeg never resolves the name);
* (c) with API keys and no allowlist, no camera is allowed;
* (d) tenant keys cannot tell "refused" from "not RTSP" from "no answer" (a port-scan oracle); the log can;
* (e) a dead camera ends `failed` by default and frees its slot;
* the relay's parser reads the camera's bytes like FFmpeg does, so a redirect cannot be smuggled past it.

Peers are small Python sockets on loopback (tests/server/fake_rtsp.py); the real RtspSource and FFmpeg run.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from server import rtsp_streams
from server.settings import Settings
from server.sources.base import SourceState, SourceStats
from server.sources.rtsp import RtspSource
from server.sources.rtsp_framing import MAX_HEADER, FramingError, Redirected, ServerStream
from server.sources.url_policy import AddressRefused, HostPolicy, check_url_allowed
from tests.e2e.conftest_rtsp import free_port
from tests.server.fake_rtsp import FakeCamera, Recorder, not_rtsp, redirecting
from tests.server.svc_helpers import make_client

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def fast_cameras(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cameras of the service given 1 s (not 5 s) to open and between frames, so refusals come quickly."""
    monkeypatch.setattr(rtsp_streams, "CAMERA_OPEN_TIMEOUT_S", 1.0)
    monkeypatch.setattr(rtsp_streams, "CAMERA_STALL_TIMEOUT_S", 1.0)


def wait_for(predicate, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} not reached within {timeout:g} s"
        time.sleep(0.02)


def wait_failed(client, sid: str, timeout: float = 20.0) -> dict:
    wait_for(lambda: client.get(f"/v1/streams/{sid}").json()["state"] == "failed", timeout, f"stream {sid} failed")
    return client.get(f"/v1/streams/{sid}").json()


def not_found(method: str, uri: str, cseq: str) -> bytes:
    return f"RTSP/1.0 404 Not Found\r\nCSeq: {cseq}\r\n\r\n".encode()


def fixed_resolver(table: dict[str, list[str]]):
    def resolve(host: str, port: int) -> list[str]:
        return table[host]

    return resolve


class NullSource:
    """A source that never connects (for tests of the create-time checks)."""

    def __init__(self, **kwargs: Any) -> None:
        self.state, self.stats = SourceState.CONNECTING, SourceStats()

    def start(self) -> None: ...

    def stop(self, timeout: float = 2.0) -> bool:
        return True


# --------------------------------------------------------------------------- (a) redirects


@pytest.mark.parametrize("target_host", ["127.0.0.2", "localhost"])
def test_camera_redirect_to_a_refused_host_is_not_followed(
    tmp_path: Path, tiny_checkpoint: Path, caplog: pytest.LogCaptureFixture, target_host: str, fast_cameras: None
) -> None:
    caplog.set_level(logging.INFO)
    bind = "127.0.0.2" if target_host == "127.0.0.2" else "127.0.0.1"
    with Recorder(host=bind) as secret, make_client(
        tmp_path, tiny_checkpoint, rtsp_allowed_hosts="127.0.0.1", rtsp_retry_for_s=1.0
    ) as client:
        location = f"rtsp://admin:pw@{target_host}:{secret.port}/secret"
        direct = client.post("/v1/streams", json={"url": location})
        assert direct.status_code == 400, direct.text  # the target is refused when registered directly
        with FakeCamera(respond=redirecting(location)) as camera:
            r = client.post("/v1/streams", json={"url": f"rtsp://127.0.0.1:{camera.port}/cam"})
            assert r.status_code == 201, r.text
            info = wait_failed(client, r.json()["id"])
            assert [m for m, _ in camera.requests].count("DESCRIBE") >= 2  # the camera sent its 302 on every attempt
        assert not secret.connected.is_set(), "the service followed the camera's redirect"
        assert "redirects are refused" in info["last_error"] and "pw@" not in info["last_error"]  # the owner's view
    logged = caplog.text
    assert "redirects are refused" in logged and f"{target_host}:{secret.port}/secret" in logged
    assert "pw@" not in logged  # the location's password is redacted


# --------------------------------------------------------------------------- (b) addresses


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("rtsp://127.0.0.1:8554/cam", "loopback"),
        ("rtsp://10.1.2.3/cam", "private"),
        ("rtsp://192.168.1.5/cam", "private"),
        ("rtsp://169.254.169.254/latest", "link-local"),
        ("rtsp://100.64.0.7/cam", "carrier-grade NAT"),
        ("rtsp://0.0.0.0/cam", "unspecified"),
        ("rtsp://224.0.0.1/cam", "multicast"),
        ("rtsp://240.0.0.1/cam", "reserved"),
        ("rtsp://[::1]/cam", "loopback"),
        ("rtsp://[fe80::1]/cam", "link-local"),
        ("rtsp://[::ffff:127.0.0.1]/cam", "loopback"),
        ("rtsp://[::ffff:10.0.0.1]/cam", "private"),
    ],
)
def test_internal_address_literals_are_refused_by_default(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        check_url_allowed(url)


def test_internal_addresses_are_allowed_when_listed_by_ip_or_cidr() -> None:
    check_url_allowed("rtsp://8.8.8.8/cam")  # public: allowed with no list
    check_url_allowed("rtsp://10.1.2.3/cam", allowed_hosts=["10.0.0.0/8"])
    check_url_allowed("rtsp://127.0.0.1:8554/cam", allowed_hosts=["127.0.0.1"])
    check_url_allowed("rtsp://[::ffff:127.0.0.1]/cam", allowed_hosts=["::ffff:127.0.0.0/104"])
    with pytest.raises(ValueError, match="not in the allowed hosts list"):
        check_url_allowed("rtsp://10.1.2.3/cam", allowed_hosts=["192.168.0.0/16"])


def test_host_names_are_judged_by_every_address_they_resolve_to() -> None:
    resolve = fixed_resolver({
        "localhost": ["127.0.0.1"], "cam.example": ["93.184.216.34"], "mixed.example": ["93.184.216.34", "10.0.0.9"],
    })
    named = HostPolicy.of(["localhost", "cam.example", "mixed.example"], resolve)
    with pytest.raises(AddressRefused, match="'localhost' resolves to 127.0.0.1 is a loopback address"):
        named.resolve("localhost", 554)  # the name is listed, its loopback address is not
    assert [str(a) for a in named.resolve("cam.example", 554)] == ["93.184.216.34"]
    with pytest.raises(AddressRefused, match="10.0.0.9"):
        named.resolve("mixed.example", 554)  # one internal address among public ones is enough to refuse
    listed = HostPolicy.of(["localhost", "127.0.0.1"], resolve)
    assert [str(a) for a in listed.resolve("localhost", 554)] == ["127.0.0.1"]
    assert [str(a) for a in HostPolicy.of(["localhost", "127.0.0.0/8"], resolve).resolve("localhost", 554)]
    with pytest.raises(AddressRefused, match="loopback"):
        HostPolicy.of(None, resolve).resolve("localhost", 554)  # no list: public addresses only
    with pytest.raises(AddressRefused, match="not in the allowed hosts list"):
        HostPolicy.of(["other.example"], resolve).resolve("cam.example", 554)


def _run_source(url: str, allowed: list[str], resolver) -> RtspSource:
    source = RtspSource(url, lambda *a: None, max_failures=1, open_timeout_s=2.0, allowed_hosts=allowed,
                        resolver=resolver)
    source.start()
    assert source.wait_for_state(SourceState.FAILED, timeout=15), source.stats
    return source


def test_connection_goes_to_the_checked_address_only() -> None:
    resolve = fixed_resolver({"cam.invalid": ["127.0.0.1"]})  # the system resolver knows no such name
    with FakeCamera(respond=not_found) as camera:
        url = f"rtsp://cam.invalid:{camera.port}/cam"
        refused = _run_source(url, ["cam.invalid"], resolve)  # name listed, loopback address not
        assert "loopback" in (refused.stats.last_error or "") and camera.requests == []
        allowed = _run_source(url, ["cam.invalid", "127.0.0.1"], resolve)
        # FFmpeg spoke RTSP to the address we checked (it could not have resolved cam.invalid itself)
        assert [m for m, _ in camera.requests][:1] == ["OPTIONS"]
        assert "404" in (allowed.stats.last_error or ""), allowed.stats.last_error


def test_rtsps_is_relayed_over_tls(tmp_path: Path) -> None:
    import ssl
    import subprocess

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=cam", "-days", "1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with FakeCamera(respond=not_found, tls=context) as camera:
        source = _run_source(f"rtsps://127.0.0.1:{camera.port}/cam", ["127.0.0.1"], None)
        assert [m for m, _ in camera.requests][:1] == ["OPTIONS"]
        assert "404" in (source.stats.last_error or ""), source.stats.last_error


# --------------------------------------------------------------------------- (c) deny by default with auth


def test_with_api_keys_and_no_allowlist_no_camera_is_allowed(tmp_path: Path, tiny_checkpoint: Path) -> None:
    assert Settings.from_flat(api_keys="k").rtsp.allowed_hosts == []
    assert Settings.from_flat(api_keys="k", rtsp_allowed_hosts="cam.example").rtsp.allowed_hosts == ["cam.example"]
    with make_client(tmp_path, tiny_checkpoint, api_keys="k", rtsp_allowed_hosts=None, source_factory=NullSource) as c:
        r = c.post("/v1/streams", json={"url": "rtsp://8.8.8.8/cam"}, headers={"X-API-Key": "k"})
        assert r.status_code == 400, r.text
        assert "M2F_RTSP_ALLOWED_HOSTS" in r.json()["detail"] and "M2F_API_KEYS" in r.json()["detail"]


def test_with_auth_off_and_no_allowlist_only_public_addresses(tmp_path: Path, tiny_checkpoint: Path) -> None:
    assert Settings().rtsp.allowed_hosts is None
    with make_client(tmp_path, tiny_checkpoint, rtsp_allowed_hosts=None, source_factory=NullSource) as c:
        r = c.post("/v1/streams", json={"url": "rtsp://127.0.0.1:8554/cam"})
        assert r.status_code == 400 and "loopback" in r.json()["detail"], r.text
        assert c.post("/v1/streams", json={"url": "rtsp://8.8.8.8/cam"}).status_code == 201


# --------------------------------------------------------------------------- (d) no oracle


def test_clients_cannot_tell_why_a_camera_is_unavailable(
    tmp_path: Path, tiny_checkpoint: Path, caplog: pytest.LogCaptureFixture, fast_cameras: None
) -> None:
    caplog.set_level(logging.INFO)
    with FakeCamera(respond=not_rtsp) as web, FakeCamera() as silent, make_client(
        tmp_path, tiny_checkpoint, rtsp_retry_for_s=1e-6, api_keys="tenant"
    ) as client:
        client.headers["X-API-Key"] = "tenant"
        urls = {
            "refused": f"rtsp://127.0.0.1:{free_port()}/cam",
            "not rtsp": f"rtsp://127.0.0.1:{web.port}/cam",
            "no answer": f"rtsp://127.0.0.1:{silent.port}/cam",
        }
        ids = {kind: client.post("/v1/streams", json={"url": url}).json()["id"] for kind, url in urls.items()}
        seen = {}
        for kind, sid in ids.items():
            info = wait_failed(client, sid)
            with client.websocket_connect(f"/v1/streams/{sid}/results", headers={"X-API-Key": "tenant"}) as ws:
                error = ws.receive_json()
                closed = ws.receive()
            seen[kind] = (info["last_error"], info["reconnects"], error["message"], closed.get("reason"))
        assert web.requests and silent.requests  # both peers were really asked
    assert len(set(seen.values())) == 1, seen
    assert seen["refused"][0] == "camera unavailable (1 failed connection attempt)"
    logged = caplog.text  # the operator still gets the diagnosis
    assert "connection refused" in logged and "not a working RTSP stream" in logged and "timed out" in logged


# --------------------------------------------------------------------------- (e) dead cameras


def test_a_dead_camera_waits_by_default_without_holding_its_slot(
    tmp_path: Path, tiny_checkpoint: Path, fast_cameras: None
) -> None:
    assert Settings().rtsp.retry_for_s >= 3600
    dead = f"rtsp://127.0.0.1:{free_port()}/cam"
    with make_client(tmp_path, tiny_checkpoint, streams_max=1) as client:
        sid = client.post("/v1/streams", json={"url": dead}).json()["id"]
        wait_for(lambda: client.get(f"/v1/streams/{sid}").json()["state"] == "waiting", what="state waiting")
        info = client.get(f"/v1/streams/{sid}").json()
        assert info["session_open"] is False and "connection refused" in info["last_error"], info
        wait_for(lambda: client.get("/readyz").status_code == 200, what="/readyz 200")
        again = client.post("/v1/streams", json={"url": dead})
        assert again.status_code == 201, again.text
        for stream in (sid, again.json()["id"]):
            assert client.delete(f"/v1/streams/{stream}").status_code == 204


def test_a_dead_camera_fails_after_its_retry_time(tmp_path: Path, tiny_checkpoint: Path, fast_cameras: None) -> None:
    dead = f"rtsp://127.0.0.1:{free_port()}/cam"
    with make_client(tmp_path, tiny_checkpoint, rtsp_retry_for_s=1.0) as client:
        sid = client.post("/v1/streams", json={"url": dead}).json()["id"]
        info = wait_failed(client, sid, timeout=20.0)
        assert info["last_error"].startswith("gave up after "), info
        assert "without a frame" in info["last_error"] and "connection refused" in info["last_error"], info


def test_refused_redirect_is_told_by_the_source_and_relays_end_with_it() -> None:
    with Recorder(host="127.0.0.2") as secret, FakeCamera(
        respond=redirecting(f"rtsp://127.0.0.2:{secret.port}/x")
    ) as cam:
        source = _run_source(f"rtsp://127.0.0.1:{cam.port}/cam", ["127.0.0.1"], None)
        error = source.stats.last_error or ""
        assert f"camera redirected to rtsp://127.0.0.2:{secret.port}/x (RTSP 302): redirects are refused" in error
        assert not secret.connected.is_set()
    source.stop()
    relays = lambda: [t for t in threading.enumerate() if t.name.startswith("rtsp-relay")]  # noqa: E731
    wait_for(lambda: not relays(), 5.0, "relay threads to exit")


# --------------------------------------------------------------------------- the relay's RTSP framing


def _released_then_error(chunks: list[bytes]) -> tuple[bytes, Exception | None]:
    stream, out = ServerStream(), b""
    try:
        for chunk in chunks:
            out += stream.feed(chunk)
    except (Redirected, FramingError) as exc:
        return out, exc
    return out, None


def test_framing_releases_whole_units_and_holds_back_a_redirect_fed_byte_by_byte() -> None:
    packet = b"$\x00\x00\x0a" + bytes(range(10))
    ok = b"RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Length: 5\r\n\r\nv=0\r\n"
    redirect = b"RTSP/1.0 302 Found\r\nCSeq: 3\r\nLocation: rtsp://u:pw@10.0.0.1/x\r\n\r\n"
    data = packet + ok + redirect
    out, error = _released_then_error([data[i : i + 1] for i in range(len(data))])
    assert out == packet + ok  # everything before the 302, and not one byte of it
    assert isinstance(error, Redirected) and error.status == 302 and error.location == "rtsp://u:pw@10.0.0.1/x"


@pytest.mark.parametrize(
    "data",
    [
        b"\r$\x00\x00\x05hello" + b"RTSP/1.0 302 Found\r\nLocation: rtsp://x/\r\n\r\n",  # FFmpeg skips '\r' before '$'
        b"RTSP/1.0 302 Found\r\n$\x00\x00\x02ab\r\nLocation: rtsp://x/\r\n\r\n",  # a packet between header lines
        b"RTSP/1.0\t301 Moved\nLocation: rtsp://x/\n\n",  # tab, bare LF line ends
        b"rtsp/1.0 305 Use Proxy\r\n\r\n",  # any letter case, no Location
        b"RTSP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi" + b"RTSP/1.0 +303 See\r\n\r\n",
    ],
    ids=["cr-before-packet", "packet-in-headers", "tab-lf", "lowercase", "after-body"],
)
def test_framing_finds_redirects_the_way_ffmpeg_reads_them(data: bytes) -> None:
    assert isinstance(_released_then_error([data])[1], Redirected)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"RTSP/1.0 200 OK\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\n", "more than one Content-Length"),
        (b"RTSP/1.0 200 OK\r\nContent-Length: 99999999\r\n\r\n", "body of 99999999 bytes"),
        (b"RTSP/1.0 200 OK\r\nX: " + b"a" * (MAX_HEADER + 10), "longer than"),
    ],
)
def test_framing_refuses_ambiguous_or_oversized_messages(data: bytes, message: str) -> None:
    out, error = _released_then_error([data])
    assert out == b"" and isinstance(error, FramingError) and message in str(error)
