#!/usr/bin/env python3
"""Throughput of the Ray backend with 1 vs N device-worker actors on this machine (CPU actors, one torch thread
each), and the time from killing an actor to its streams' first result on another.

    python scripts/bench_ray_actors.py --streams 4 --frames 12 --actors 1 2 --checkpoint-every 10

Streams are driven concurrently (one client thread each, one frame in flight per stream, as a WebSocket client
with `block`). Uses a randomly initialised tiny model (seed 0) unless --model is given.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def run(actors: int, streams: int, frames: int, images: list[bytes], settings_kw: dict, kill: bool) -> dict:
    import ray

    from server.ray_backend.backend import RayBackend
    from tests.server.svc_helpers import make_settings

    tmp = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    backend = RayBackend(make_settings(tmp, ray_actors=actors, **settings_kw), torch_threads=1)
    try:
        ids = [backend.open_stream({"task": "semantic", "encodings": ["png"]}) for _ in range(streams)]
        for s in ids:  # warm-up: adapter creation, first step
            backend.submit(s, images[0], -1)

        def drive(s: str) -> None:
            for i in range(frames):
                backend.submit(s, images[i % len(images)], i)

        threads = [threading.Thread(target=drive, args=(s,)) for s in ids]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
        out = {"actors": actors, "streams": streams, "frames": streams * frames, "s": elapsed,
               "fps": streams * frames / elapsed}
        if kill and actors > 1:
            victim = backend.owner(ids[0])
            ray.kill(backend.actors[victim])
            t0 = time.perf_counter()
            msg = backend.submit(ids[0], images[0], "after-kill")
            out["failover_s"] = time.perf_counter() - t0
            out["migrated"] = msg.get("migrated")
        return out
    finally:
        backend.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--frames", type=int, default=12, help="timed frames per stream")
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--checkpoint-every", type=int, default=10, help="M2F_RAY_CHECKPOINT_EVERY")
    args = parser.parse_args()

    import ray

    from tests.server.svc_helpers import build_tiny_checkpoint, video_jpegs

    model = args.model or build_tiny_checkpoint(Path(tempfile.mkdtemp(prefix="bench-ray-model-")) / "tiny")
    images = video_jpegs("bigbuckbunny.mp4", 8, width=args.width)
    ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    try:
        for actors in args.actors:
            print(run(actors, args.streams, args.frames, images, {"checkpoint": model, "ray_checkpoint_every": args.checkpoint_every},
                      kill=True), flush=True)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
