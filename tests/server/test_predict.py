"""`POST /v1/predict`: one image -> the result a WebSocket frame gets; the caller's live stream's weights by
`stream_id` (owner-checked, the stream left as it was); the WebSocket frames' limits, auth and quotas."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mask2former_ttt.outputs import png_decode
from server.app import create_app
from server.wire.inbound import pack_frame
from tests.server.svc_helpers import FakeAdapter, fake_factory, jpeg, make_client, make_settings, png, rgb_frame

IMAGE = jpeg(rgb_frame(60, size=(48, 64)))
KEY_A, KEY_B = "key-a", "key-b"


def post(client: TestClient, data: bytes = IMAGE, ctype: str = "image/jpeg", key: str | None = None, **params):
    headers = {"content-type": ctype, **({"X-API-Key": key} if key else {})}
    return client.post("/v1/predict", content=data, headers=headers, params=params)


def start(ws, **fields) -> dict:
    ws.send_text(json.dumps({"type": "start", "policy": "block", **fields}))
    msg = ws.receive_json()
    assert msg["type"] == "started", msg
    return msg


def comparable(result: dict) -> dict:
    """A result without what differs between two deliveries of the same prediction (ids, counters, timings)."""
    drop = {"stream_id", "frame_id", "frame_index", "capture_ts", "timings_ms", "dropped", "memory_bytes", "ttt"}
    return {k: v for k, v in result.items() if k not in drop}


@pytest.mark.parametrize("task, encodings", [("semantic", ["png", "rle"]), ("instance", ["rle", "polygons"]),
                                             ("panoptic", ["png", "polygons"])])
def test_an_image_gets_the_result_a_websocket_frame_gets(tmp_path: Path, tiny_checkpoint: Path, task: str,
                                                          encodings: list[str]) -> None:
    """Real adapters: a main_only WebSocket frame and the prediction of the same image are the same result."""
    with TestClient(create_app(make_settings(tmp_path, tiny_checkpoint))) as client:
        with client.websocket_connect("/v1/streams/ws") as ws:
            start(ws, task=task, method="main_only", encodings=encodings, score_threshold=0, min_area=0)
            ws.send_bytes(pack_frame(IMAGE, frame_id=0))
            frame_result = ws.receive_json()
        raw = post(client, task=task, encodings=encodings, score_threshold=0, min_area=0)
        multipart = client.post("/v1/predict", files={"file": ("x.jpg", IMAGE, "image/jpeg")},
                                params={"task": task, "encodings": encodings, "score_threshold": 0, "min_area": 0})
    assert raw.status_code == multipart.status_code == 200, (raw.text, multipart.text)
    assert frame_result["type"] == "result" and set(frame_result["masks"]) == set(encodings)
    assert comparable(raw.json()) == comparable(frame_result) == comparable(multipart.json())
    assert raw.json()["ttt"]["steps_taken"] == 0 and raw.json()["ttt"]["loss"] is None


def test_stream_id_predicts_with_the_streams_weights_and_leaves_the_stream_as_it_was(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    created: list[FakeAdapter] = []
    with make_client(tmp_path, tiny_checkpoint, factory=fake_factory(created=created)) as client:
        with client.websocket_connect("/v1/streams/ws") as ws:
            stream_id = start(ws)["stream_id"]
            for i in range(2):
                ws.send_bytes(pack_frame(png(rgb_frame(70 + i)), frame_id=i))
                assert ws.receive_json()["type"] == "result"
            stream = created[0]
            state = (list(stream.seen), stream.total)
            expected = int(stream.total) % stream.num_classes
            adapted = post(client, stream_id=stream_id)
            initial = post(client)
            assert (list(stream.seen), stream.total) == state  # no step, no frame taken
            ws.send_bytes(pack_frame(png(rgb_frame(90)), frame_id=2))
            after = ws.receive_json()  # the next message is the next frame's result: no reply to the prediction
    assert adapted.status_code == initial.status_code == 200, (adapted.text, initial.text)
    assert adapted.json()["stream_id"] == stream_id and adapted.json()["frame_index"] == 2
    assert set(png_decode_b64(adapted.json()).ravel().tolist()) == {expected}
    assert set(png_decode_b64(initial.json()).ravel().tolist()) == {0}  # a fresh main_only stream: total 0
    assert expected != 0
    assert (after["type"], after["frame_id"], after["frame_index"]) == ("result", 2, 2)
    assert len(stream.seen) == 3


def png_decode_b64(result: dict):
    import base64

    return png_decode(base64.b64decode(result["masks"]["png"]))


def test_another_keys_stream_is_not_found(tmp_path: Path, tiny_checkpoint: Path) -> None:
    created: list[FakeAdapter] = []
    with make_client(tmp_path, tiny_checkpoint, factory=fake_factory(created=created),
                     api_keys=[KEY_A, KEY_B]) as client:
        assert post(client).status_code == 401
        with client.websocket_connect("/v1/streams/ws", headers={"X-API-Key": KEY_A}) as ws:
            stream_id = start(ws)["stream_id"]
            mine = post(client, key=KEY_A, stream_id=stream_id)
            theirs = post(client, key=KEY_B, stream_id=stream_id)
            unknown = post(client, key=KEY_A, stream_id="ws-0-00000000")
    assert mine.status_code == 200
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.json()["detail"] == f"no live stream {stream_id!r}"


def test_quota_and_capacity_refuse_a_one_image_stream(tmp_path: Path, tiny_checkpoint: Path) -> None:
    created: list[FakeAdapter] = []
    with make_client(tmp_path / "quota", tiny_checkpoint, factory=fake_factory(created=created),
                     api_keys=[KEY_A, KEY_B], streams_max_per_key=1) as client:
        with client.websocket_connect("/v1/streams/ws", headers={"X-API-Key": KEY_A}) as ws:
            stream_id = start(ws)["stream_id"]
            quota = post(client, key=KEY_A)
            other_key = post(client, key=KEY_B)
            own_stream = post(client, key=KEY_A, stream_id=stream_id)
    assert quota.status_code == 429 and "M2F_STREAMS_MAX_PER_KEY=1" in quota.json()["detail"]
    assert other_key.status_code == own_stream.status_code == 200
    factory = fake_factory(created=created)
    with make_client(tmp_path / "full", tiny_checkpoint, factory=factory, streams_max=1) as client:
        with client.websocket_connect("/v1/streams/ws") as ws:
            start(ws)
            full = post(client)
    assert full.status_code == 503 and "the service is full" in full.json()["detail"]


@pytest.mark.parametrize(
    "data, ctype, status, detail",
    [
        (b"GIF89a" + bytes(64), "image/jpeg", 415, "the image is neither JPEG nor PNG (bad magic bytes)"),
        (IMAGE, "text/plain", 415, "send one JPEG or PNG image as the body"),
        (b"", "image/png", 422, "no image in the request"),
        (IMAGE[:40], "image/jpeg", 422, "bad_image: cannot decode image"),
        (jpeg(rgb_frame(5, size=(40, 60))), "image/jpeg", 422,
         "bad_image: image is 60x40 = 2400 pixels; the limit is 2000"),
        (b"\xff\xd8\xff" + bytes(5000), "image/jpeg", 413, "the limit is 4096 bytes (M2F_STREAMS_MAX_FRAME_BYTES)"),
    ],
)
def test_the_websocket_frames_limits_apply(tmp_path: Path, tiny_checkpoint: Path, data: bytes, ctype: str,
                                           status: int, detail: str) -> None:
    with make_client(tmp_path, tiny_checkpoint, streams_max_frame_bytes=4096, streams_max_frame_pixels=2000) as client:
        r = post(client, data, ctype)
    assert r.status_code == status, r.text
    assert detail in r.json()["detail"]


def test_multipart_takes_only_a_file_part(tmp_path: Path, tiny_checkpoint: Path) -> None:
    with make_client(tmp_path, tiny_checkpoint, streams_max_frame_bytes=4096) as client:
        extra = client.post("/v1/predict", files={"file": ("x.jpg", IMAGE, "image/jpeg")}, data={"task": "instance"})
        big = client.post("/v1/predict", files={"file": ("x.jpg", b"\xff\xd8\xff" + bytes(4100), "image/jpeg")})
    assert extra.status_code == 400 and "unexpected form fields ['task']" in extra.json()["detail"]
    assert big.status_code == 413 and "4099" not in big.json()["detail"]


def test_a_body_without_a_length_is_cut_at_the_limit(tmp_path: Path, tiny_checkpoint: Path) -> None:
    chunks = [b"\xff\xd8\xff" + bytes(1021)] + [bytes(1024)] * 8  # 9 KiB, sent chunked (no Content-Length)
    with make_client(tmp_path, tiny_checkpoint, streams_max_frame_bytes=4096) as client:
        r = client.post("/v1/predict", content=iter(chunks), headers={"content-type": "image/jpeg"})
    assert r.status_code == 413 and r.json()["detail"] == (
        "the body passes 4096 bytes; the limit is 4096 bytes (M2F_STREAMS_MAX_FRAME_BYTES)"
    )
