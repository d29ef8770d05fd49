"""Load and soak against the real service (uvicorn on 127.0.0.1, real TTT adapters), printing their figures.

- load: 8 WebSocket streams paced at 8 fps for `M2F_LOAD_SECONDS` (default 30) s under the `latest` policy: no
  errors, every frame accounted for (processed + dropped == sent, from the server's own `stop` reply), every
  stream served, p50/p99 end-to-end latency and RSS at start and end printed; RSS growth bounded.
- soak: 1 stream x `M2F_SOAK_FRAMES` (default 2,000) frames under `block` with the `fast` preset (a TTT step on
  every third frame, so every adaptation path runs ~670 times while the soak fits in about 4 minutes on 2 cores):
  one result per frame, RSS growth between the warmed-up stream (frame 200) and the end under 5 %.
Run alone with `pytest -s tests/e2e/test_service_load.py` to see the figures.
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
from pathlib import Path

import pytest
from websockets.sync.client import connect

from server.wire.inbound import pack_frame
from tests.server.svc_helpers import build_tiny_checkpoint, running_service, video_jpegs

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
LOAD_STREAMS, LOAD_FPS = 8, 8.0
LOAD_SECONDS = float(os.environ.get("M2F_LOAD_SECONDS", "30"))
SOAK_FRAMES = int(os.environ.get("M2F_SOAK_FRAMES", "2000"))
SOAK_WARM = 200


def rss_mb() -> float:
    """This process's resident set (the service runs in it, on a uvicorn thread)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("svc-load")
    ckpt = build_tiny_checkpoint(root / "ckpt")
    with running_service(root, ckpt, streams_max=LOAD_STREAMS, streams_idle_timeout_s=60) as server:
        yield server


class PacedStream:
    """One client: a sender thread paced at `fps`, and the caller's thread reading results until `stop`."""

    def __init__(self, service, jpegs: list[bytes], fps: float, seconds: float) -> None:
        self.ws = connect(f"{service.ws_url}/v1/streams/ws", open_timeout=30, max_size=None, ping_interval=None)
        self.ws.__enter__()
        self.ws.send(json.dumps({"type": "start", "policy": "latest"}))
        started = json.loads(self.ws.recv(timeout=60))
        assert started["type"] == "started", started
        self.jpegs, self.fps, self.seconds = jpegs, fps, seconds
        self.sent, self.latencies_ms, self.errors, self.stopped = 0, [], [], None

    def _send(self) -> None:
        t0 = time.monotonic()
        while time.monotonic() - t0 < self.seconds:
            self.ws.send(pack_frame(self.jpegs[self.sent % len(self.jpegs)], frame_id=self.sent, capture_ts=time.time()))
            self.sent += 1
            time.sleep(max(0.0, t0 + self.sent / self.fps - time.monotonic()))  # pacing, not synchronisation
        self.ws.send(json.dumps({"type": "stop"}))

    def run(self) -> None:
        sender = threading.Thread(target=self._send, daemon=True)
        sender.start()
        try:
            while self.stopped is None:
                msg = json.loads(self.ws.recv(timeout=120))
                if msg["type"] == "result":
                    self.latencies_ms.append(1000 * (time.time() - msg["capture_ts"]))
                elif msg["type"] == "error":
                    self.errors.append(msg)
                elif msg["type"] == "stop":
                    self.stopped = msg
        finally:
            sender.join(self.seconds + 30)
            self.ws.close()


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) >= 2 else float("nan")


def test_load_8_streams(service) -> None:
    jpegs = video_jpegs("bikes.mp4", 16, width=128)
    rss_start = rss_mb()
    streams = [PacedStream(service, jpegs, LOAD_FPS, LOAD_SECONDS) for _ in range(LOAD_STREAMS)]
    threads = [threading.Thread(target=s.run, daemon=True) for s in streams]
    for t in threads:
        t.start()
    for t in threads:
        t.join(LOAD_SECONDS + 180)
    rss_end = rss_mb()
    latencies = [ms for s in streams for ms in s.latencies_ms]
    print(
        f"\nload: {LOAD_STREAMS} streams x {LOAD_SECONDS:g} s at {LOAD_FPS:g} fps: "
        f"sent {sum(s.sent for s in streams)}, results {len(latencies)}, "
        f"dropped {sum(s.stopped['dropped'] for s in streams if s.stopped)}, "
        f"errors {sum(len(s.errors) for s in streams)}; per-stream fps "
        f"{[round(len(s.latencies_ms) / LOAD_SECONDS, 2) for s in streams]}; "
        f"latency p50 {_pct(latencies, 50):.0f} ms p99 {_pct(latencies, 99):.0f} ms; "
        f"RSS {rss_start:.0f} -> {rss_end:.0f} MB"
    )
    for s in streams:
        assert s.stopped is not None, "a stream never got its stop reply"
        assert s.errors == [], s.errors[:3]
        assert s.stopped["processed"] == len(s.latencies_ms) > 0
        assert s.stopped["processed"] + s.stopped["dropped"] == s.sent, "frames lost without being counted"
    assert rss_end < rss_start + 400, "RSS grew by more than 400 MB under load"


def test_soak_one_stream(service) -> None:
    jpegs = video_jpegs("bikes.mp4", 32, width=96)
    with connect(f"{service.ws_url}/v1/streams/ws", open_timeout=30, max_size=None, ping_interval=None) as ws:
        ws.send(json.dumps({"type": "start", "policy": "block", "queue_size": 4, "preset": "fast"}))
        assert json.loads(ws.recv(timeout=60))["type"] == "started"

        window = threading.Semaphore(4)  # frames in flight, as a well-behaved client keeps them

        def send() -> None:
            for i in range(SOAK_FRAMES):
                window.acquire()
                ws.send(pack_frame(jpegs[i % len(jpegs)], frame_id=i, capture_ts=time.time()))

        sender = threading.Thread(target=send, daemon=True)
        t0 = time.monotonic()
        sender.start()
        ids, rss_warm = [], None
        while len(ids) < SOAK_FRAMES:
            msg = json.loads(ws.recv(timeout=120))
            assert msg["type"] == "result", msg
            ids.append(msg["frame_id"])
            window.release()
            if len(ids) == SOAK_WARM:
                rss_warm = rss_mb()
        rss_end = rss_mb()
        sender.join(30)
    growth = (rss_end - rss_warm) / rss_warm
    print(
        f"\nsoak: {SOAK_FRAMES} frames in {time.monotonic() - t0:.0f} s; RSS at frame {SOAK_WARM} {rss_warm:.0f} MB, "
        f"at the end {rss_end:.0f} MB ({100 * growth:+.1f} %)"
    )
    assert ids == list(range(SOAK_FRAMES))
    assert growth < 0.05
