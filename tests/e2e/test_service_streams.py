"""End to end: real uvicorn on 127.0.0.1, real TTT adapters, real videos streamed over WebSockets.

Two concurrent streams adapt independently: each gets one result per frame with timings; stream A's frames
never change stream B's state (B's checkpoint is bit-identical before and after A's frames), and B's loss
sequence equals that of a fresh stream fed B's frames alone.
"""

from __future__ import annotations

import json
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
import torch
from websockets.sync.client import connect

from server.wire.inbound import pack_frame
from tests.server.svc_helpers import build_tiny_checkpoint, running_service, video_jpegs

pytestmark = pytest.mark.e2e
A_FRAMES, B_FRAMES = 14, 8


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("svc-streams")
    ckpt = build_tiny_checkpoint(root / "ckpt")
    with running_service(root, ckpt) as server:
        yield server


class Client:
    """A blocking WebSocket stream client (closed by the ExitStack it is opened in)."""

    def __init__(self, stack: ExitStack, service, **start) -> None:
        self.ws = stack.enter_context(connect(f"{service.ws_url}/v1/streams/ws", open_timeout=10, max_size=None))
        self.ws.send(json.dumps({"type": "start", "policy": "block", **start}))
        self.started = json.loads(self.ws.recv(timeout=30))
        assert self.started["type"] == "started", self.started

    def send_frames(self, jpegs: list[bytes], first_id: int = 0) -> list[dict]:
        """Send frames, then read exactly one result per frame (sending ahead is fine: policy block)."""
        for i, data in enumerate(jpegs):
            self.ws.send(pack_frame(data, frame_id=first_id + i, capture_ts=time.time()))
        return [self.recv("result") for _ in jpegs]

    def recv(self, kind: str) -> dict:
        msg = json.loads(self.ws.recv(timeout=120))
        assert msg["type"] == kind, msg
        return msg

    def control(self, kind: str, **fields) -> dict:
        self.ws.send(json.dumps({"type": kind, **fields}))
        return self.recv(kind)


def state_params(service, checkpoint_id: str) -> dict[str, torch.Tensor]:
    path = Path(service.app.state.settings.checkpoint.dir) / f"{checkpoint_id}.pt"
    return torch.load(path, weights_only=True)["state"]["params"]


def test_two_concurrent_streams_adapt_independently(service) -> None:
    with ExitStack() as stack:
        _two_streams(stack, service)
    metrics = httpx.get(f"{service.url}/metrics").text
    assert f'm2f_frames_processed_total{{source="ws"}} {float(A_FRAMES + 2 * B_FRAMES)}' in metrics
    deadline = time.monotonic() + 10
    while 'm2f_active_streams{source="ws"} 0.0' not in httpx.get(f"{service.url}/metrics").text:
        assert time.monotonic() < deadline, "closed streams still counted as active"
        time.sleep(0.05)


def _two_streams(stack: ExitStack, service) -> None:
    frames_a = video_jpegs("bigbuckbunny.mp4", A_FRAMES)
    frames_b = video_jpegs("bikes.mp4", B_FRAMES)
    b = Client(stack, service, task="semantic")
    results_b = b.send_frames(frames_b[:3])
    before = b.control("checkpoint")["checkpoint_id"]

    a = Client(stack, service, task="panoptic", encodings=["png", "rle"])
    results_a: list[dict] = []
    a_thread = threading.Thread(target=lambda: results_a.extend(a.send_frames(frames_a)), daemon=True)
    a_thread.start()
    deadline = time.monotonic() + 120
    while service.app.state.worker.sessions[a.started["stream_id"]].processed < A_FRAMES // 2:  # A is half way
        assert b.control("stats")["processed"] == 3  # B idles meanwhile
        assert time.monotonic() < deadline
        time.sleep(0.1)
    after = b.control("checkpoint")["checkpoint_id"]
    results_b += b.send_frames(frames_b[3:], first_id=3)  # concurrently with A's remaining frames
    a_thread.join(180)
    assert not a_thread.is_alive()

    # one result per frame, in order, with per-stage timings
    for results, n, task in ((results_a, A_FRAMES, "panoptic"), (results_b, B_FRAMES, "semantic")):
        assert [r["frame_id"] for r in results] == list(range(n))
        assert all(r["task"] == task and r["dropped"] == 0 for r in results)
        for i, r in enumerate(results):
            t = r["timings_ms"]
            assert set(t) == {"queue", "decode", "ttt", "predict", "postprocess", "encode", "end_to_end"}
            # pipelined default preset: frame i reports frame i - 1's step, taken after frame i - 1's result left
            took_step = i > 0
            assert (t["ttt"] > 0) == took_step and t["predict"] > 0 and t["end_to_end"] >= t["predict"]
            assert (r["ttt"]["loss"] is not None) == took_step and r["ttt"]["rolled_back"] is False
            assert r["ttt"]["step_scale"] == 1.0 and r["ttt"]["shift_score"] is None  # no reference: guard off
    assert (results_a[0]["width"], results_a[0]["height"]) == (160, 90)
    assert set(results_a[0]["masks"]) == {"png", "rle"} and set(results_b[0]["masks"]) == {"png"}

    # A's frames never touched B's state
    p_before, p_after = state_params(service, before), state_params(service, after)
    assert p_before.keys() == p_after.keys() and len(p_before) > 0
    assert all(torch.equal(p_before[k], p_after[k]) for k in p_before)

    # the streams adapted differently; B's sequence is the one B's frames alone produce
    loss_a = [r["ttt"]["loss"] for r in results_a]
    loss_b = [r["ttt"]["loss"] for r in results_b]
    assert loss_a[:B_FRAMES] != loss_b
    c = Client(stack, service, task="semantic")
    loss_c = [r["ttt"]["loss"] for r in c.send_frames(frames_b)]
    assert loss_c[0] is None and loss_b[0] is None  # pipelined: no step before frame 0's prediction
    assert loss_c[1:] == pytest.approx(loss_b[1:], rel=1e-5)
