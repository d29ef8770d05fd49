"""Memory of closed streams goes back to the OS: a worker that served 8 streams returns to its warmed-up size."""

from __future__ import annotations

import queue
import sys
from pathlib import Path

import pytest

from model.checkpoint import bundled_model_dir, load_checkpoint
from server.metrics import Metrics
from server.worker import DeviceWorker, FrameItem, FrameResult, SessionClosed, StreamSession
from tests.server.svc_helpers import rgb_frame

STREAMS = 8
FRAMES = 3

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")


def rss_bytes() -> int:
    """The process's resident set size (VmRSS of /proc/self/status)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def serve_streams(worker: DeviceWorker, n: int) -> None:
    """Open `n` streams, run FRAMES frames through each, close them all and wait until each is closed."""
    streams = []
    for _ in range(n):
        out: queue.Queue = queue.Queue()
        session = StreamSession("ws", "semantic", "online", "default", "block", FRAMES, out.put)
        worker.open_session(session).result(60)
        streams.append((session, out))
    for i in range(FRAMES):
        for session, _ in streams:
            assert worker.put(session, FrameItem(frame_id=i, data=rgb_frame(40 + 20 * i, (128, 160))), timeout=60)
    for session, out in streams:
        got = [out.get(timeout=120) for _ in range(FRAMES)]
        assert all(isinstance(r, FrameResult) for r in got), got
        worker.close_session(session, "done").result(60)
        assert isinstance(out.get(timeout=60), SessionClosed)


def test_rss_after_closing_eight_streams_is_back_near_the_warmed_up_size(tmp_path: Path) -> None:
    worker = DeviceWorker(
        load_checkpoint(bundled_model_dir()), Metrics(), max_streams=STREAMS, max_state_memory=1 << 34,
        states_dir=tmp_path / "states", torch_threads=1,
    )
    worker.start()
    try:
        serve_streams(worker, 1)  # warm-up: lazy allocations of the model, torch and the worker
        baseline = rss_bytes()
        serve_streams(worker, STREAMS)
        after = rss_bytes()
    finally:
        worker.stop()
    print(f"RSS after warm-up {baseline / 2**20:.1f} MiB, after closing {STREAMS} streams {after / 2**20:.1f} MiB")
    assert not worker.sessions
    assert after <= 1.10 * baseline, f"{after / 2**20:.1f} MiB after close vs {baseline / 2**20:.1f} MiB baseline"
