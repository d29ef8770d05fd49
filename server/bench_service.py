"""Server rows of `m2f-ttt bench`: a real `m2f-ttt serve` on loopback fed over WebSocket by N concurrent streams.

Throughput rows: each stream is a closed-loop client (send a frame, wait for its result, send the next), so the
figures are the service's throughput and latency, not a queue's. Aggregate fps = results / wall time over all
streams; per-stream fps and p50/p99 end-to-end latency (client send -> result received). They run twice: on the
default worker layout (lanes, `server.worker.layout`) and on one serial lane (the worker before lanes). The bare
row runs the same frames through the library loop in this process (decode -> `step_frame` -> encode).

Latency rows: one stream paced like a camera (a frame every 1/fps s, fps below what the device sustains), p50/p99
end-to-end latency for plain inference (`main_only`) and for presets; a pipelined preset sends each result before
its TTT step, so its latency is a prediction's.

Every row also counts the TTT steps its results report (`ttt.steps_taken`) and the steps skipped
(`ttt.steps_skipped`): with the asynchronous schedule (`M2F_TTT_SCHEDULE=async`) the steps run beside the
predictions on the worker's step executor, so delivered fps and adaptation steps/s are separate figures.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import httpx
import numpy as np
import torch

from mask2former_ttt.outputs.frame import encode_masks, jpeg_encode, segments_info
from mask2former_ttt.ttt import build_adapter
from mask2former_ttt.ttt.frame_step import step_frame
from model.ymodel import YModel
from server.wire.inbound import pack_frame
from server.worker.imaging import decode_image, result_size


@dataclass
class ServerRow:
    """N streams through the service vs the bare library loop on the same frames."""

    streams: int
    fps: float
    per_stream_fps: list[float]
    p50_ms: float
    p99_ms: float
    errors: int
    bare_fps: float
    steps_per_s: float = 0.0  # TTT steps the results reported, per second of the measurement, all streams
    steps_skipped: int = 0  # steps the results reported skipped (asynchronous schedule)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_server(
    model_dir: Path, threads: int, max_streams: int, preset: str, lanes: int | None = None,
    extra_env: dict[str, str] | None = None,
) -> Iterator[str]:
    """`m2f-ttt serve` as a subprocess on a free loopback port (`extra_env`: more M2F_* settings, e.g. the Ray
    backend's); yields its ws:// base URL."""
    port = _free_port()
    tmp = Path(tempfile.mkdtemp(prefix="m2f-bench-"))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("M2F_")},  # the bench's own settings only
        "M2F_MODEL_PATH": str(model_dir),
        "M2F_TTT_METHOD": "online",
        "M2F_WORKER_TORCH_THREADS": str(threads),
        **({"M2F_WORKER_LANES": str(lanes)} if lanes else {}),
        "M2F_STREAMS_MAX": str(max_streams),
        "M2F_TTT_PRESET": preset,
        "M2F_DATA_DIR": str(tmp),
        "M2F_LOG_LEVEL": "WARNING",
        "OMP_NUM_THREADS": str(threads),
        **(extra_env or {}),
    }
    cmd = [sys.executable, "-c", "from server.cli import main; main()", "serve", "--port", str(port)]
    log = (tmp / "serve.log").open("w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    started = False
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"m2f-ttt serve exited during start-up; log: {tmp / 'serve.log'}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("m2f-ttt serve did not become ready within 120 s")
            time.sleep(0.2)
        started = True
        yield f"ws://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        if started:  # a failed start keeps its log for the error message
            shutil.rmtree(tmp, ignore_errors=True)


async def _stream(
    url: str, jpegs: list[bytes], seconds: float, task: str, start: dict | None = None, interval: float = 0.0
) -> tuple[list[float], int, float, tuple[int, int]]:
    """One stream for `seconds`: (latencies in s, errors, its wall time, (TTT steps, skipped steps) its results
    reported). Closed loop, or, with `interval`, a frame every `interval` s (a camera; a late result delays the next
    frame, never queues frames up)."""
    import websockets

    latencies: list[float] = []
    errors = steps = skipped = 0
    async with websockets.connect(f"{url}/v1/streams/ws", max_size=None) as ws:
        await ws.send(json.dumps({"type": "start", "task": task, "policy": "block", **(start or {})}))
        started = json.loads(await ws.recv())
        if started.get("type") != "started":
            raise RuntimeError(f"stream refused: {started}")
        t_start = time.perf_counter()
        i = 0
        while time.perf_counter() - t_start < seconds:
            if interval:
                await asyncio.sleep(max(0.0, t_start + i * interval - time.perf_counter()))  # the camera's clock
            t0 = time.perf_counter()
            await ws.send(pack_frame(jpegs[i % len(jpegs)], frame_id=i))
            while True:
                msg = json.loads(await ws.recv())
                if msg.get("type") in ("result", "error"):
                    break
            if msg["type"] == "error":
                errors += 1
            ttt = msg.get("ttt") or {}
            steps += int(ttt.get("steps_taken") or 0)
            skipped += int(ttt.get("steps_skipped") or 0)
            latencies.append(time.perf_counter() - t0)
            i += 1
        wall = time.perf_counter() - t_start
        await ws.send(json.dumps({"type": "stop"}))
    return latencies, errors, wall, (steps, skipped)


async def _streams(url: str, jpegs: list[bytes], n: int, seconds: float, task: str) -> list[tuple]:
    _wait_idle(url)  # the previous streams' slots are released asynchronously after they stop
    return await asyncio.gather(*(_stream(url, jpegs, seconds, task) for _ in range(n)))


def _wait_idle(url: str, timeout: float = 30.0) -> None:
    """Until the server holds no stream (GET /v1/info capacity.streams == 0)."""
    info = url.replace("ws://", "http://", 1) + "/v1/info"
    deadline = time.monotonic() + timeout
    while httpx.get(info, timeout=5).json()["capacity"]["streams"]:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the server still holds streams {timeout:.0f} s after the last ones stopped")
        time.sleep(0.05)


def _percentile_ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(1000 * ordered[max(0, math.ceil(q * len(ordered)) - 1)], 2)


def bare_fps(model: YModel, jpegs: list[bytes], preset: str, seconds: float, task: str, max_side: int = 640,
             method: str = "online") -> float:
    """The library loop the worker runs, in this process: decode -> step_frame -> encode, for `seconds`."""
    adapter = build_adapter(model, method, preset, seed=0)
    names = model.cfg.class_names
    t_start, n = time.perf_counter(), 0
    while time.perf_counter() - t_start < seconds:
        rgb = decode_image(jpegs[n % len(jpegs)], 1 << 30)
        frame = torch.from_numpy(rgb).permute(2, 0, 1)
        step = step_frame(adapter, frame, task, result_size(rgb.shape[0], rgb.shape[1], max_side))  # type: ignore[arg-type]
        encode_masks(task, step.result, ("png",), segments_info(task, step.result, names))
        n += 1
    return n / (time.perf_counter() - t_start)


def server_rows(
    model: YModel, model_dir: Path, frames: list[torch.Tensor], stream_counts: tuple[int, ...], seconds: float,
    threads: int | None, preset: str = "default", task: str = "panoptic", lanes: int | None = None,
    extra_env: dict[str, str] | None = None, method: str = "online",
) -> dict[str, ServerRow]:
    """One server (`lanes` worker lanes; None: the default layout; `extra_env`: more M2F_* settings; `method`: the
    streams' TTT method) for all stream counts (streams of a count run together, counts one after another). The
    bare loop runs `method` and `preset` with the preset's schedule."""
    jpegs = _jpegs(frames)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads or 1)
    try:
        bare = bare_fps(model, jpegs, preset, seconds, task, method=method)
    finally:
        torch.set_num_threads(previous)
    out: dict[str, ServerRow] = {}
    # one slot more than the largest count: the previous stream may still be closing when the next ones open
    env = {"M2F_TTT_METHOD": method, **(extra_env or {})}
    with running_server(model_dir, threads or 1, max(stream_counts) + 1, preset, lanes, env) as url:
        asyncio.run(_streams(url, jpegs, 1, min(2.0, seconds), task))  # warm-up: first-call costs
        for n in stream_counts:
            results = asyncio.run(_streams(url, jpegs, n, seconds, task))
            wall = max(r[2] for r in results)  # the measured window, without connecting and closing
            lat = [x for r in results for x in r[0]]
            out[str(n)] = ServerRow(
                streams=n,
                fps=round(len(lat) / wall, 3),
                per_stream_fps=[round(len(r[0]) / r[2], 3) for r in results],
                p50_ms=round(1000 * statistics.median(lat), 2),
                p99_ms=_percentile_ms(lat, 0.99),
                errors=sum(r[1] for r in results),
                bare_fps=round(bare, 3),
                steps_per_s=round(sum(r[3][0] for r in results) / wall, 3),
                steps_skipped=sum(r[3][1] for r in results),
            )
    return out


@dataclass
class LatencyRow:
    """One paced stream through the server: end-to-end latency at `fps` frames per second."""

    method: str
    preset: str
    fps: float
    p50_ms: float
    p99_ms: float
    frames: int
    errors: int


def latency_rows(
    model_dir: Path, frames: list[torch.Tensor], configs: dict[str, tuple[str, str]], fps: float, seconds: float,
    threads: int, task: str = "panoptic",
) -> dict[str, LatencyRow]:
    """`configs`: row name -> (method, preset); each row one stream paced at `fps` on one server."""
    jpegs = _jpegs(frames)
    out: dict[str, LatencyRow] = {}
    with running_server(model_dir, threads, 3, "default") as url:
        for name, (method, preset) in configs.items():
            start = {"method": method, "preset": preset}
            _wait_idle(url)
            asyncio.run(_stream(url, jpegs, min(2.0, seconds), task, start))  # warm-up
            _wait_idle(url)
            lat, errors, _, _ = asyncio.run(_stream(url, jpegs, seconds, task, start, interval=1.0 / fps))
            out[name] = LatencyRow(method, preset, fps, round(1000 * statistics.median(lat), 2),
                                   _percentile_ms(lat, 0.99), len(lat), errors)
    return out


def _jpegs(frames: list[torch.Tensor]) -> list[bytes]:
    return [jpeg_encode(np.ascontiguousarray(f.permute(1, 2, 0).numpy()), quality=90) for f in frames]
