"""WS `start` option `ttt_view`: every N-th result carries the masked input and the reconstruction as JPEGs."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from server.wire.inbound import pack_frame
from server.worker.device_worker import default_adapter_factory
from tests.server.svc_helpers import jpeg, make_client, rgb_frame


def _stream(client, frames: int, **start) -> list[dict]:
    with client.websocket_connect("/v1/streams/ws") as ws:
        ws.send_text(json.dumps({"type": "start", "task": "semantic", "policy": "block", "method": "online", **start}))
        assert ws.receive_json()["type"] == "started"
        for i in range(frames):
            ws.send_bytes(pack_frame(jpeg(rgb_frame(20 * i)), frame_id=i))
        results = [ws.receive_json() for _ in range(frames)]
        ws.send_text(json.dumps({"type": "stop"}))
    return results


def _image(b64: str) -> np.ndarray:
    data = base64.b64decode(b64)
    assert data[:3] == b"\xff\xd8\xff"
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def test_ttt_view_every_n_results_and_never_unasked(tmp_path: Path, tiny_checkpoint: Path) -> None:
    with make_client(tmp_path, tiny_checkpoint, factory=default_adapter_factory) as client:
        results = _stream(client, 5, ttt_view=2)
        assert [("ttt_view" in r) for r in results] == [True, False, True, False, True]
        view = results[2]["ttt_view"]
        masked, recon = _image(view["masked_jpeg"]), _image(view["reconstruction_jpeg"])
        assert masked.shape == recon.shape == (view["height"], view["width"], 3)
        assert isinstance(view["loss"], float) and view["loss"] > 0
        assert isinstance(results[2]["ttt"]["loss"], float)  # the step's ℓ_s, as on every result
        assert not any("ttt_view" in r for r in _stream(client, 2))
