"""WS /v1/streams/ws through the ASGI app (fake adapters: protocol and flow control, not TTT)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from starlette.websockets import WebSocketDisconnect

from mask2former_ttt.outputs import png_decode, rle_decode
from server.wire.inbound import pack_frame
from tests.server.svc_helpers import fake_factory, jpeg, make_client, png, rgb_frame


def start(ws, **fields) -> dict:
    ws.send_text(json.dumps({"type": "start", **fields}))
    msg = ws.receive_json()
    assert msg["type"] == "started", msg
    return msg


def close_code(ws) -> int:
    """Read until the server closes; return its close code."""
    with pytest.raises(WebSocketDisconnect) as exc:
        while True:
            ws.receive_json()
    return exc.value.code


def test_one_result_per_frame_with_timings_and_encodings(tmp_path: Path, tiny_checkpoint: Path) -> None:
    with make_client(tmp_path, tiny_checkpoint) as client, client.websocket_connect("/v1/streams/ws") as ws:
        started = start(ws, task="semantic", policy="block", encodings=["png", "rle", "overlay"])
        assert started["encodings"] == ["png", "rle", "overlay"] and len(started["class_names"]) == 19
        for i in range(4):
            ws.send_bytes(pack_frame(jpeg(rgb_frame(30 * i)), frame_id=f"f{i}", capture_ts=100.0 + i))
        results = [ws.receive_json() for _ in range(4)]
        assert [r["frame_id"] for r in results] == ["f0", "f1", "f2", "f3"]
        r = results[0]
        assert r["type"] == "result" and r["capture_ts"] == 100.0 and r["frame_index"] == 0
        assert set(r["timings_ms"]) == {"queue", "decode", "ttt", "predict", "postprocess", "encode", "end_to_end"}
        assert (r["width"], r["height"]) == (64, 48) and r["dropped"] == 0
        import base64

        label = png_decode(base64.b64decode(r["masks"]["png"]))
        assert label.shape == (48, 64)
        assert {s["id"] for s in r["segments_info"]} == set(label.ravel().tolist())
        assert rle_decode(r["masks"]["rle"]).shape == (len(r["segments_info"]), 48, 64)
        assert base64.b64decode(r["masks"]["overlay"])[:3] == b"\xff\xd8\xff"
        ws.send_text(json.dumps({"type": "stop"}))
        assert ws.receive_json()["type"] == "stop"
        assert close_code(ws) == 1000


def test_latest_policy_reports_drops(tmp_path: Path, tiny_checkpoint: Path) -> None:
    with make_client(tmp_path, tiny_checkpoint, factory=fake_factory(delay_s=0.1)) as client:
        with client.websocket_connect("/v1/streams/ws") as ws:
            start(ws, policy="latest", queue_size=1)
            for i in range(12):
                ws.send_bytes(pack_frame(png(rgb_frame(i)), frame_id=i))
            ws.send_text(json.dumps({"type": "stop"}))
            msgs = []
            while (m := ws.receive_json())["type"] != "stop":
                msgs.append(m)
        ids = [m["frame_id"] for m in msgs]
        assert ids == sorted(ids) and ids[-1] == 11  # in order, newest kept
        assert len(ids) < 12 and msgs[-1]["dropped"] == 12 - len(ids) == m["dropped"]


def test_controls(tmp_path: Path, tiny_checkpoint: Path) -> None:
    with make_client(tmp_path, tiny_checkpoint) as client, client.websocket_connect("/v1/streams/ws") as ws:
        start(ws, policy="block")
        ws.send_bytes(pack_frame(png(rgb_frame(5)), frame_id=0))
        assert ws.receive_json()["task"] == "semantic"
        ws.send_text(json.dumps({"type": "set_task", "task": "instance"}))
        reply = ws.receive_json()
        assert (reply["type"], reply["task"], reply["encodings"]) == ("set_task", "instance", ["rle"])
        ws.send_bytes(pack_frame(png(rgb_frame(5)), frame_id=1))
        r = ws.receive_json()
        assert r["task"] == "instance" and "rle" in r["masks"] and all(s["isthing"] for s in r["segments_info"])
        ws.send_text(json.dumps({"type": "checkpoint"}))
        cp = ws.receive_json()
        assert cp["type"] == "checkpoint" and cp["frames"] == 2
        ws.send_text(json.dumps({"type": "reset"}))
        assert ws.receive_json()["frames_before_reset"] == 2
        ws.send_text(json.dumps({"type": "restore", "checkpoint_id": cp["checkpoint_id"]}))
        assert ws.receive_json()["type"] == "restore"
        ws.send_text(json.dumps({"type": "restore", "checkpoint_id": "nope"}))
        err = ws.receive_json()
        assert err["code"] == "restore_failed" and "no checkpoint" in err["message"]
        ws.send_text(json.dumps({"type": "stats"}))
        stats = ws.receive_json()
        assert stats["type"] == "stats" and stats["processed"] == 2 and stats["task"] == "instance"
        ws.send_text(json.dumps({"type": "dance"}))
        assert "unknown message type" in ws.receive_json()["message"]
        ws.send_text(json.dumps({"type": "set_task", "task": "depth"}))
        assert ws.receive_json()["code"] == "bad_message"
        ws.send_bytes(pack_frame(png(rgb_frame(5)), frame_id=2))  # still alive
        assert ws.receive_json()["frame_id"] == 2


@pytest.mark.parametrize(
    ("first", "code", "err"),
    [
        (b"\x00\x00\x00\x00", 1003, "start_expected"),
        ("not json", 1007, "bad_json"),
        (json.dumps({"type": "stats"}), 1003, "start_expected"),
        (json.dumps({"type": "start", "task": "depth"}), 1007, "bad_start"),
        (json.dumps({"type": "start", "method": "nope"}), 1007, "bad_start"),
    ],
)
def test_bad_start(tmp_path: Path, tiny_checkpoint: Path, first, code: int, err: str) -> None:
    with make_client(tmp_path, tiny_checkpoint) as client, client.websocket_connect("/v1/streams/ws") as ws:
        ws.send_bytes(first) if isinstance(first, bytes) else ws.send_text(first)
        msg = ws.receive_json()
        assert msg["type"] == "error" and msg["code"] == err and msg["message"]
        assert close_code(ws) == code


@pytest.mark.parametrize(
    ("payload", "code", "err"),
    [
        (struct.pack(">I", 999) + b"{}", 1007, "bad_frame"),
        (pack_frame(b"GIF89a" + b"\x00" * 20), 1003, "unsupported_image"),
        (pack_frame(b"\xff\xd8\xff" + b"\x00" * 5000), 1009, "frame_too_big"),
    ],
)
def test_malformed_frames_close_with_a_reason(
    tmp_path: Path, tiny_checkpoint: Path, payload: bytes, code: int, err: str
) -> None:
    with make_client(tmp_path, tiny_checkpoint, streams_max_frame_bytes=4096) as client:
        with client.websocket_connect("/v1/streams/ws") as ws:
            start(ws)
            ws.send_bytes(payload)
            msg = ws.receive_json()
            assert msg["code"] == err and msg["message"]
            assert close_code(ws) == code
        assert client.get("/readyz").json()["capacity"]["streams"] == 0  # session released


def test_undecodable_image_is_a_frame_error_not_a_disconnect(tmp_path: Path, tiny_checkpoint: Path) -> None:
    with make_client(tmp_path, tiny_checkpoint) as client, client.websocket_connect("/v1/streams/ws") as ws:
        start(ws, policy="block")
        ws.send_bytes(pack_frame(b"\xff\xd8\xff\xe0" + b"garbage" * 10, frame_id="bad"))
        err = ws.receive_json()
        assert err["code"] == "bad_image" and err["frame_id"] == "bad" and "cannot decode" in err["message"]
        ws.send_bytes(pack_frame(jpeg(rgb_frame()), frame_id="good"))
        assert ws.receive_json()["frame_id"] == "good"


def test_capacity_refusal_uses_1013(tmp_path: Path, tiny_checkpoint: Path) -> None:
    with make_client(tmp_path, tiny_checkpoint, streams_max=1) as client:
        with client.websocket_connect("/v1/streams/ws") as first:
            start(first)
            with client.websocket_connect("/v1/streams/ws") as second:
                second.send_text(json.dumps({"type": "start"}))
                msg = second.receive_json()
                assert msg["code"] == "capacity" and "1 of 1 streams" in msg["message"]
                assert close_code(second) == 1013
            assert client.get("/readyz").status_code == 503
            assert 'm2f_admission_refusals_total{reason="streams"} 1.0' in client.get("/metrics").text


def test_websocket_auth(tmp_path: Path, tiny_checkpoint: Path) -> None:
    with make_client(tmp_path, tiny_checkpoint, api_keys="k1,k2") as client:
        with client.websocket_connect("/v1/streams/ws") as ws:  # no key anywhere: refused after the start message
            ws.send_json({"type": "start"})
            assert ws.receive_json()["code"] == "unauthorized"
            assert close_code(ws) == 1008
        with client.websocket_connect("/v1/streams/ws") as ws:
            ws.send_json({"type": "start", "api_key": "wrong"})
            assert ws.receive_json()["code"] == "unauthorized"
        with client.websocket_connect("/v1/streams/ws") as ws:  # browsers: the key in the start message
            ws.send_json({"type": "start", "api_key": "k1"})
            assert ws.receive_json()["type"] == "started"
        with client.websocket_connect("/v1/streams/ws?api_key=wrong") as ws:
            assert close_code(ws) == 1008
        with client.websocket_connect("/v1/streams/ws?api_key=k2") as ws:
            start(ws)
        with client.websocket_connect("/v1/streams/ws", headers={"Authorization": "Bearer k1"}) as ws:
            start(ws)
