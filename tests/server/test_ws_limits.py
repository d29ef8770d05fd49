"""WS /v1/streams/ws: documented limits and refusals (docs/websocket-protocol.md) through the real routers and
device worker with fake adapters — restore only into the same method and preset, results scaled down to
`MAX_RESULT_SIDE` (never up), frames above `M2F_STREAMS_MAX_FRAME_PIXELS` refused per frame, `START_TIMEOUT_S`."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from mask2former_ttt.outputs import png_decode, rle_decode
from server import worker_factory
from server.app import create_app
from server.routers import streams_ws
from server.wire.inbound import pack_frame
from tests.server.serve_thread import serve_in_thread
from tests.server.svc_helpers import fake_factory, jpeg, make_client, make_settings, png, rgb_frame

pytestmark = pytest.mark.timeout(60)  # a TestClient waits forever on a stream that never answers


def start(ws, **fields) -> dict:
    ws.send_text(json.dumps({"type": "start", "policy": "block", **fields}))
    msg = ws.receive_json()
    assert msg["type"] == "started", msg
    return msg


def send_frames(ws, n: int, value: int = 40) -> None:
    for i in range(n):
        ws.send_bytes(pack_frame(png(rgb_frame(value + i)), frame_id=i))
        assert ws.receive_json()["type"] == "result"


def stats(ws) -> dict:
    ws.send_text(json.dumps({"type": "stats"}))
    msg = ws.receive_json()
    assert msg["type"] == "stats", msg
    return msg


# ---- restore: same method and preset only; ids are ids, not paths ---------------------------------------------
@pytest.mark.parametrize(("method", "preset"), [("online", "release"), ("main_only", "default")])
def test_restore_refuses_a_checkpoint_of_another_method_or_preset(
    tmp_path: Path, tiny_checkpoint: Path, method: str, preset: str
) -> None:
    with make_client(tmp_path, tiny_checkpoint) as client:
        with client.websocket_connect("/v1/streams/ws") as a:
            start(a, method="online", preset="default")
            send_frames(a, 3)
            a.send_text(json.dumps({"type": "checkpoint"}))
            cp = a.receive_json()
            assert cp["type"] == "checkpoint" and cp["frames"] == 3, cp
        cid = cp["checkpoint_id"]

        with client.websocket_connect("/v1/streams/ws") as b:
            started = start(b, method=method, preset=preset)
            assert (started["method"], started["preset"]) == (method, preset)
            send_frames(b, 1, value=90)
            b.send_text(json.dumps({"type": "restore", "checkpoint_id": cid}))
            err = b.receive_json()
            assert err["type"] == "error" and err["code"] == "restore_failed", err
            assert "method=online preset=default" in err["message"], err  # what the checkpoint is
            assert f"method={method} preset={preset}" in err["message"], err  # what this stream runs
            assert cid in err["message"]
            send_frames(b, 1, value=91)  # the stream goes on, its own state untouched
            assert stats(b)["processed"] == 2

        # positive control: the same checkpoint restores into a stream of the same method and preset
        with client.websocket_connect("/v1/streams/ws") as c:
            start(c, method="online", preset="default")
            c.send_text(json.dumps({"type": "restore", "checkpoint_id": cid}))
            ok = c.receive_json()
            assert ok == {"type": "restore", "stream_id": ok["stream_id"], "checkpoint_id": cid, "frames": 3}


@pytest.mark.parametrize("bad_id", ["../outside", "../states/../outside", "{tmp}/outside", "outside.pt", ""])
def test_restore_refuses_path_like_ids_even_when_the_file_exists(
    tmp_path: Path, tiny_checkpoint: Path, bad_id: str
) -> None:
    states = tmp_path / "states"
    with make_client(tmp_path, tiny_checkpoint) as client:
        with client.websocket_connect("/v1/streams/ws") as a:
            start(a)
            send_frames(a, 2)
            a.send_text(json.dumps({"type": "checkpoint"}))
            cid = a.receive_json()["checkpoint_id"]
        saved = (states / f"{cid}.pt").read_bytes()
        # valid stream states where a path-like id would land if it were joined to states_dir unchecked
        (tmp_path / "outside.pt").write_bytes(saved)
        (states / "outside.pt.pt").write_bytes(saved)

        with client.websocket_connect("/v1/streams/ws") as b:
            start(b)
            b.send_text(json.dumps({"type": "restore", "checkpoint_id": bad_id.format(tmp=tmp_path)}))
            err = b.receive_json()
            assert err["type"] == "error" and err["code"] == "restore_failed", err
            assert "checkpoint_id must be 1-64 characters" in err["message"], err
            b.send_text(json.dumps({"type": "restore", "checkpoint_id": "no-such-checkpoint"}))
            err = b.receive_json()
            assert err["code"] == "restore_failed" and "no checkpoint 'no-such-checkpoint'" in err["message"], err
            send_frames(b, 1)  # the stream goes on
            assert stats(b)["processed"] == 1


# ---- results scaled to MAX_RESULT_SIDE (server.worker.imaging) ------------------------------------------------------
@pytest.mark.parametrize(
    ("frame_hw", "result_hw"),
    [
        ((60, 100), (24, 40)),  # landscape: long side 100 -> 40, aspect 5:3 kept
        ((100, 60), (40, 24)),  # portrait
        ((40, 40), (40, 40)),  # exactly the limit: unchanged
        ((18, 30), (18, 30)),  # smaller: never upscaled
    ],
)
def test_results_are_scaled_down_to_max_result_side_keeping_the_aspect(
    tmp_path: Path, tiny_checkpoint: Path, frame_hw: tuple[int, int], result_hw: tuple[int, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(worker_factory, "MAX_RESULT_SIDE", 40)  # the value the service's worker is built with
    client = make_client(tmp_path, tiny_checkpoint)
    with client, client.websocket_connect("/v1/streams/ws") as ws:
        start(ws, task="semantic", encodings=["png", "rle"])
        ws.send_bytes(pack_frame(jpeg(rgb_frame(80, size=frame_hw)), frame_id="f"))
        r = ws.receive_json()
    assert r["type"] == "result", r
    assert (r["frame_height"], r["frame_width"]) == frame_hw
    assert (r["height"], r["width"]) == result_hw
    assert png_decode(base64.b64decode(r["masks"]["png"])).shape == result_hw
    assert rle_decode(r["masks"]["rle"]).shape[1:] == result_hw


# ---- M2F_STREAMS_MAX_FRAME_PIXELS ---------------------------------------------------------------------------------------
def test_a_frame_above_max_frame_pixels_is_a_bad_image_and_the_stream_goes_on(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    client = make_client(tmp_path, tiny_checkpoint, streams_max_frame_pixels=1200)
    with client, client.websocket_connect("/v1/streams/ws") as ws:
        start(ws)
        ws.send_bytes(pack_frame(jpeg(rgb_frame(60, size=(30, 41))), frame_id="big"))  # 1230 pixels
        err = ws.receive_json()
        assert err["type"] == "error" and err["code"] == "bad_image" and err["frame_id"] == "big", err
        assert "41x30 = 1230 pixels" in err["message"] and "the limit is 1200" in err["message"], err
        ws.send_bytes(pack_frame(png(rgb_frame(60, size=(30, 40))), frame_id="at-limit"))  # 1200: accepted
        ok = ws.receive_json()
        assert ok["type"] == "result" and ok["frame_id"] == "at-limit", ok
        assert (ok["frame_height"], ok["frame_width"]) == (30, 40)
        s = stats(ws)
        assert (s["processed"], s["errors"]) == (1, 1)


# ---- START_TIMEOUT_S (real uvicorn: the client can wait with a timeout) ---------------------------------------------
def test_a_client_that_never_sends_start_is_closed_with_1008_start_timeout(
    tmp_path: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(streams_ws, "START_TIMEOUT_S", 0.3)
    app = create_app(make_settings(tmp_path, tiny_checkpoint), adapter_factory=fake_factory())
    with serve_in_thread(app) as server:
        with connect(f"{server.ws_url}/v1/streams/ws", open_timeout=10) as ws:
            msg = json.loads(ws.recv(timeout=20))  # a guard against a hang, not a timing assertion
            assert msg["type"] == "error" and msg["code"] == "start_timeout", msg
            assert "no start message within 0.3 s" in msg["message"]
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=20)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008, closed.value
        # a client that does send start in time is unaffected
        with connect(f"{server.ws_url}/v1/streams/ws", open_timeout=10) as ws:
            ws.send(json.dumps({"type": "start"}))
            assert json.loads(ws.recv(timeout=20))["type"] == "started"
