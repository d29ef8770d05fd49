"""`Client.predict`: bytes, a path or an RGB array -> the service's parsed result; refusals as client errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mask2former_ttt.client import Client, NotFoundError, decode_masks
from mask2former_ttt.client.errors import ClientError
from tests.server.svc_helpers import jpeg, make_client, rgb_frame
from tests.server.svc_helpers import FakeAdapter, fake_factory

RGB = rgb_frame(80, size=(48, 64))


def client_over(test_client) -> Client:
    """A `Client` whose HTTP calls go to the in-process app."""
    c = Client("http://testserver")
    c.http.close()
    c.http = test_client
    return c


def test_predict_takes_bytes_paths_and_arrays(tmp_path: Path, tiny_checkpoint: Path) -> None:
    path = tmp_path / "frame.jpg"
    path.write_bytes(jpeg(RGB))
    created: list[FakeAdapter] = []
    with make_client(tmp_path, tiny_checkpoint, factory=fake_factory(created=created)) as tc:
        c = client_over(tc)
        from_path = c.predict(path, task="instance", encodings="polygons")
        from_bytes = c.predict(path.read_bytes(), task="instance", encodings=["polygons"])
        from_array = c.predict(RGB, task="semantic", encodings=["png", "rle"])
        with tc.websocket_connect("/v1/streams/ws") as ws:
            ws.send_text(json.dumps({"type": "start", "policy": "block"}))
            stream_id = ws.receive_json()["stream_id"]
            adapted = c.predict(RGB, stream_id=stream_id)
        with pytest.raises(NotFoundError, match="no live stream 'ws-9-gone'"):
            c.predict(RGB, stream_id="ws-9-gone")
    assert from_path == {**from_bytes, "timings_ms": from_path["timings_ms"], "stream_id": from_path["stream_id"]}
    assert from_path["task"] == "instance" and set(from_path["masks"]) == {"polygons"}
    assert decode_masks(from_path)["polygons"].shape == (len(from_path["segments_info"]), 48, 64)
    assert (from_array["width"], from_array["height"]) == (64, 48)
    assert np.array_equal(decode_masks(from_array)["png"], np.zeros((48, 64)))  # the fake's θ0 class
    assert adapted["stream_id"] == stream_id


def test_predict_refuses_what_is_not_an_image_before_sending(tmp_path: Path) -> None:
    c = Client("http://127.0.0.1:9")  # nothing listens: the refusal comes first
    with pytest.raises(ValueError, match="neither JPEG nor PNG"):
        c.predict(b"GIF89a...")
    c.close()


def test_a_refused_image_raises_a_client_error(tmp_path: Path, tiny_checkpoint: Path) -> None:
    with make_client(tmp_path, tiny_checkpoint, streams_max_frame_pixels=100) as tc:
        with pytest.raises(ClientError, match="HTTP 422: bad_image: image is 64x48 = 3072 pixels; the limit is 100"):
            client_over(tc).predict(RGB)
