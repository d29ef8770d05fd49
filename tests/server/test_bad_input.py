"""Bad-input catalogue: malformed WebSocket messages, over-long and odd path parameters,
oversized frames, cross-origin browser requests, shutdown close code, readiness body and the OpenAPI contract.

Every bad input must get its documented 4xx status or close code with a message naming the problem (never a
500, an "Exception in ASGI application", a bare close or a hang), and a healthy stream opened before it must keep
getting results while it happens.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from server.app import create_app
from server.jobs.store import Job
from server.wire.inbound import HEADER_LEN, pack_frame
from tests.server.serve_thread import serve_in_thread
from tests.server.svc_helpers import fake_factory, jpeg, make_client, make_settings, png, rgb_frame

pytestmark = pytest.mark.timeout(90)  # a hang guard only: every wait below ends on a message or a close

FRAME = png(rgb_frame(60))
DEEP = "[" * 100_000  # deeper than CPython's JSON parser recursion limit


class Healthy:
    """A stream started before the bad inputs; `check()` proves it still gets results, in order."""

    def __init__(self, ws) -> None:
        self.ws, self.n = ws, 0
        ws.send_text(json.dumps({"type": "start", "policy": "block"}))
        assert ws.receive_json()["type"] == "started"

    def check(self) -> None:
        self.ws.send_bytes(pack_frame(FRAME, frame_id=self.n))
        msg = self.ws.receive_json()
        assert (msg["type"], msg["frame_id"]) == ("result", self.n), msg
        self.n += 1


@pytest.fixture
def client(tmp_path: Path, tiny_checkpoint: Path) -> Iterator[TestClient]:
    with make_client(tmp_path, tiny_checkpoint) as c:
        yield c


@pytest.fixture
def healthy(client: TestClient) -> Iterator[Healthy]:
    with client.websocket_connect("/v1/streams/ws") as ws:
        h = Healthy(ws)
        h.check()
        yield h
        h.check()  # still alive after the test's bad inputs


def refused(ws) -> tuple[dict, int, str]:
    """The error message a socket gets before its close, and the close code and reason."""
    error = ws.receive_json()
    with pytest.raises(WebSocketDisconnect) as closed:
        ws.receive_json()
    return error, closed.value.code, closed.value.reason


# ---- malformed JSON on the streaming socket ------------------------------------------------------------------------
def test_deeply_nested_start_message_closes_1007_bad_json(client: TestClient, healthy: Healthy) -> None:
    with client.websocket_connect("/v1/streams/ws") as ws:
        ws.send_text(DEEP)
        error, code, _ = refused(ws)
    assert (error["type"], error["code"], code) == ("error", "bad_json", 1007), (error, code)
    assert "nested too deeply" in error["message"]
    healthy.check()


def test_deeply_nested_control_message_closes_1007_bad_json(client: TestClient, healthy: Healthy) -> None:
    with client.websocket_connect("/v1/streams/ws") as ws:
        Healthy(ws)
        ws.send_text('{"type": "stats", "x": ' + DEEP)
        error, code, _ = refused(ws)
    assert (error["code"], code) == ("bad_json", 1007), (error, code)
    assert "nested too deeply" in error["message"]
    healthy.check()


def test_deeply_nested_frame_header_closes_1007_bad_frame(client: TestClient, healthy: Healthy) -> None:
    header = b"[" * 4000  # within the 4096-byte header limit, deeper than the parser's recursion limit
    with client.websocket_connect("/v1/streams/ws") as ws:
        Healthy(ws)
        ws.send_bytes(HEADER_LEN.pack(len(header)) + header + FRAME)
        error, code, _ = refused(ws)
    assert (error["code"], code) == ("bad_frame", 1007), (error, code)
    assert "frame header is JSON nested too deeply" in error["message"]
    healthy.check()


# ---- path parameters -----------------------------------------------------------------------------------------------
def _succeeded_job(client: TestClient, job_id: str = "0123456789abcdef") -> str:
    """A job record in the succeeded state with one result file (no video processing needed)."""
    store = client.app.state.job_store
    store.results_dir(job_id).mkdir(parents=True)
    (store.results_dir(job_id) / "results.jsonl").write_text("{}\n")
    store.save(
        Job(
            id=job_id,
            state="succeeded",
            task="semantic",
            method="online",
            preset="default",
            filename="clip.mp4",
            size_bytes=1,
            results=["results.jsonl"],
        )
    )
    return job_id


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("a" * 5000, "at most 1024 characters"),
        ("panoptic/" + "é" * 200, "is not 1+ ASCII letters, digits"),
        ("a" * 300 + "/x.png", "component is 300 bytes; the limit is 255"),
        ("results.jsonl%00.png", "is not 1+ ASCII letters, digits"),
    ],
)
def test_result_names_that_cannot_be_files_get_422_not_500(
    client: TestClient, healthy: Healthy, name: str, problem: str
) -> None:
    job_id = _succeeded_job(client)
    assert client.get(f"/v1/jobs/{job_id}/results/results.jsonl").status_code == 200  # positive control
    r = client.get(f"/v1/jobs/{job_id}/results/{name}")
    assert r.status_code == 422, (r.status_code, r.text[:300])
    assert problem in r.text, r.text[:500]
    healthy.check()


@pytest.mark.parametrize(
    "path",
    ["/v1/jobs/{id}", "/v1/jobs/{id}/results/results.jsonl", "/v1/streams/{id}"],
)
def test_over_long_ids_get_422_with_the_limit(client: TestClient, healthy: Healthy, path: str) -> None:
    r = client.get(path.format(id="a" * 5000))
    assert r.status_code == 422, (r.status_code, r.text[:300])
    assert "at most 64 characters" in r.text
    assert client.delete(path.format(id="a" * 65)).status_code in (405, 422)
    healthy.check()


@pytest.mark.parametrize("stream_id", ["é" * 100, "\u20ac" * 50, "a" * 5000])
def test_camera_results_socket_with_an_odd_id_closes_4404_with_a_message(
    client: TestClient, healthy: Healthy, stream_id: str
) -> None:
    """A non-ASCII id made the close reason longer than a close frame allows: no close frame at all."""
    with client.websocket_connect(f"/v1/streams/{quote(stream_id)}/results") as ws:
        error, code, reason = refused(ws)
    assert (error["code"], code) == ("not_found", 4404), (error, code)
    assert len(reason.encode()) <= 123 and reason.startswith("no stream")
    healthy.check()


def test_over_long_paths_get_an_http_answer_from_the_server(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """Beyond the WebSocket handshake's 8 KiB line limit uvicorn answers 414 at once (no hang)."""
    app = create_app(make_settings(tmp_path, tiny_checkpoint), adapter_factory=fake_factory())
    with serve_in_thread(app) as server:
        with pytest.raises(Exception, match="414"):
            connect(f"{server.ws_url}/v1/streams/{'a' * 20_000}/results", open_timeout=10)
        with connect(f"{server.ws_url}/v1/streams/{'a' * 5000}/results", open_timeout=10) as ws:
            assert json.loads(ws.recv(timeout=10))["code"] == "not_found"
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=10)
        assert closed.value.rcvd.code == 4404


def test_a_method_the_path_does_not_serve_gets_405_listing_every_allowed_method(client: TestClient) -> None:
    """Starlette named only the first matching route's methods (`DELETE /v1/streams` said `Allow: POST`)."""
    for path, allow in [("/v1/streams", "GET, POST"), ("/v1/jobs/abc123", "DELETE, GET"), ("/healthz", "GET")]:
        r = client.request("PUT", path)
        assert (r.status_code, r.headers.get("allow")) == (405, allow), (path, r.status_code, r.headers)
        assert allow in r.json()["detail"]


# ---- oversized frames get the app's message, not only the transport's close ----------------------------------------
def test_oversized_frame_gets_frame_too_big_then_1009_under_serve(
    tmp_path: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import signal

    import uvicorn

    from server import cli, logging_setup

    limit = 64 * 1024
    seen: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: seen.update(kwargs))
    monkeypatch.setattr(logging_setup, "setup_logging", lambda level: None)
    monkeypatch.setattr(signal, "signal", lambda *args: None)  # keep pytest's own SIGTERM handler
    monkeypatch.setenv("M2F_STREAMS_MAX_FRAME_BYTES", str(limit))
    monkeypatch.setenv("M2F_MODEL_PATH", str(tiny_checkpoint))
    cli._serve(host="127.0.0.1", port=0, log_level="WARNING")  # what `m2f-ttt serve` hands uvicorn
    assert seen["ws_max_size"] >= 2 * limit

    settings = make_settings(tmp_path, tiny_checkpoint, streams_max_frame_bytes=limit)
    app = create_app(settings, adapter_factory=fake_factory())
    with serve_in_thread(app, ws_max_size=seen["ws_max_size"]) as server:
        url = f"{server.ws_url}/v1/streams/ws"
        with connect(url, open_timeout=10, max_size=None) as ok, connect(url, open_timeout=10) as ws:
            for s in (ok, ws):
                s.send(json.dumps({"type": "start", "policy": "block"}))
                assert json.loads(s.recv(timeout=10))["type"] == "started"
            ws.send(pack_frame(FRAME + b"\0" * (limit + 100 * 1024), frame_id=0))
            error = json.loads(ws.recv(timeout=10))
            assert error["code"] == "frame_too_big" and str(limit) in error["message"], error
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=10)
            assert closed.value.rcvd.code == 1009
            ok.send(pack_frame(jpeg(rgb_frame(70)), frame_id=7))  # the other stream goes on
            assert json.loads(ok.recv(timeout=10))["frame_id"] == 7
        with connect(url, open_timeout=10) as ws:  # the transport keeps a hard cap above the app's limit
            ws.send(json.dumps({"type": "start"}))
            ws.recv(timeout=10)
            ws.send(b"\0" * (seen["ws_max_size"] + 1))
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=10)
            assert closed.value.rcvd.code == 1009


# ---- shutdown close code (1012 service restart, as uvicorn sends) --------------------------------------------------
def test_app_shutdown_closes_open_streams_with_1012(client: TestClient) -> None:
    with client.websocket_connect("/v1/streams/ws") as ws:
        Healthy(ws).check()
        client.app.state.worker.stop()  # what the app's own shutdown does; uvicorn sends 1012 before it
        with pytest.raises(WebSocketDisconnect) as closed:
            while True:
                ws.receive_json()
    assert (closed.value.code, closed.value.reason) == (1012, "server shutting down")


# ---- OpenAPI -------------------------------------------------------------------------------------------------------
def test_openapi_documents_the_upload_body_metrics_type_and_refusals(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    body = paths["/v1/jobs"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["required"] == ["file"] and body["properties"]["file"] == {
        "type": "string",
        "format": "binary",
        "description": body["properties"]["file"]["description"],
    }
    assert {"task", "method", "preset"} <= set(body["properties"])
    metrics = paths["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == [client.get("/metrics").headers["content-type"]]
    assert list(metrics)[0].startswith("text/plain; version=")
    expected = {
        ("/v1/jobs", "post"): {"413", "415", "422", "503"},
        ("/v1/jobs/{job_id}", "get"): {"404"},
        ("/v1/jobs/{job_id}/results/{name}", "get"): {"404", "409"},
        ("/v1/streams", "post"): {"400", "503"},
        ("/v1/streams/{stream_id}", "get"): {"404"},
        ("/v1/streams/{stream_id}/reset", "post"): {"400", "404", "409"},
        ("/v1/streams/{stream_id}/restore", "post"): {"400", "404", "409"},
    }
    for (path, method), codes in expected.items():
        documented = set(paths[path][method]["responses"])
        assert codes <= documented, (path, method, codes - documented)


# ---- readiness shows no filesystem path ----------------------------------------------------------------------------
def test_readyz_names_the_model_without_its_path(client: TestClient, tiny_checkpoint: Path) -> None:
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["model"] == {"name": "tiny"}, r.json()
    assert str(tiny_checkpoint) not in r.text and tiny_checkpoint.name not in r.text.replace('"tiny"', "")


# ---- Origin check (same origin by default, M2F_API_ALLOWED_ORIGINS) ------------------------------------------------
EVIL = {"origin": "http://evil.example"}


@pytest.mark.parametrize("path", ["/v1/streams/ws", "/v1/streams/abc123/results"])
def test_cross_origin_websocket_is_refused_1008_with_a_message(
    client: TestClient, healthy: Healthy, path: str
) -> None:
    with client.websocket_connect(path, headers=EVIL) as ws:
        error, code, _ = refused(ws)
    assert (error["code"], code) == ("origin_not_allowed", 1008), (error, code)
    assert "evil.example" in error["message"] and "M2F_API_ALLOWED_ORIGINS" in error["message"]
    healthy.check()


@pytest.mark.parametrize("headers", [{}, {"origin": "http://testserver"}, {"origin": "http://TestServer/"}])
def test_same_origin_or_no_origin_websocket_is_served(client: TestClient, headers: dict) -> None:
    with client.websocket_connect("/v1/streams/ws", headers=headers) as ws:
        Healthy(ws).check()


def test_cross_origin_posts_get_403_and_reads_stay_open(client: TestClient, healthy: Healthy) -> None:
    r = client.post("/v1/jobs", headers=EVIL, files={"file": ("x.mp4", b"\0" * 64, "video/mp4")})
    assert r.status_code == 403 and "evil.example" in r.json()["detail"], r.text
    r = client.post("/v1/streams", headers=EVIL, json={"url": "rtsp://10.0.0.1/cam"})
    assert r.status_code == 403, r.text
    assert client.post("/v1/streams/abc123/reset", headers=EVIL).status_code == 403
    assert client.delete("/v1/jobs/abc123", headers=EVIL).status_code == 403
    assert client.get("/v1/jobs", headers=EVIL).status_code == 200  # reads are not state changes
    assert client.delete("/v1/jobs/abc123").status_code == 404  # no Origin (curl): served
    assert client.delete("/v1/jobs/abc123", headers={"origin": "http://testserver"}).status_code == 404
    healthy.check()


def test_allowed_origins_setting_admits_a_listed_origin(tmp_path: Path, tiny_checkpoint: Path) -> None:
    with make_client(tmp_path, tiny_checkpoint, api_allowed_origins=["https://app.example"]) as client:
        with client.websocket_connect("/v1/streams/ws", headers={"origin": "https://app.example"}) as ws:
            Healthy(ws).check()
        assert client.delete("/v1/jobs/abc123", headers={"origin": "https://app.example"}).status_code == 404
        assert client.delete("/v1/jobs/abc123", headers={"origin": "https://other.example"}).status_code == 403
