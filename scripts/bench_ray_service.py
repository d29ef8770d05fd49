#!/usr/bin/env python3
"""The service on the Ray backend against the single-process service: a real `m2f-ttt serve` subprocess per variant
(local backend with its default lanes and with one lane; `--backend ray` with 1 and with 2 CPU actors), N concurrent closed-loop WebSocket streams (send a
frame, wait for its result), aggregate fps and p50/p99 end-to-end latency. Variants are interleaved over `--rounds`
and the medians reported, in one run.

    python scripts/bench_ray_service.py --streams 4 --seconds 20 --rounds 2 --json docs/benchmark/ray_service.json

One torch thread per worker (`M2F_WORKER_TORCH_THREADS=1`); the Ray service starts its own local Ray on this machine.
Uses the bundled demo model unless --model is given; frames: `bigbuckbunny.mp4` at --width px.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def measure(model_dir: Path, env: dict[str, str], streams: int, seconds: float, jpegs: list[bytes]) -> dict:
    from server.bench_service import _percentile_ms, _streams, running_server

    with running_server(model_dir, 1, streams + 1, "default", extra_env=env) as url:
        asyncio.run(_streams(url, jpegs, streams, min(3.0, seconds), "semantic"))  # warm-up on every actor
        results = asyncio.run(_streams(url, jpegs, streams, seconds, "semantic"))
    wall = max(r[2] for r in results)
    lat = [x for r in results for x in r[0]]
    return {
        "fps": round(len(lat) / wall, 3),
        "per_stream_fps": [round(len(r[0]) / r[2], 3) for r in results],
        "p50_ms": round(1000 * statistics.median(lat), 1),
        "p99_ms": _percentile_ms(lat, 0.99),
        "errors": sum(r[1] for r in results),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="model directory (default: the bundled model)")
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from model.checkpoint import bundled_model_dir
    from tests.server.svc_helpers import video_jpegs

    model_dir = args.model or bundled_model_dir()
    jpegs = video_jpegs("bigbuckbunny.mp4", 24, width=args.width)
    variants = {
        "local": {},
        "local, 1 lane": {"M2F_WORKER_LANES": "1"},  # one device doing one frame at a time, as one actor does
        "ray, 1 actor": {"M2F_BACKEND": "ray", "M2F_RAY_ACTORS": "1"},
        "ray, 2 actors": {"M2F_BACKEND": "ray", "M2F_RAY_ACTORS": "2"},
    }
    runs: dict[str, list[dict]] = {name: [] for name in variants}
    for r in range(args.rounds):
        for name, env in variants.items():
            runs[name].append(measure(model_dir, env, args.streams, args.seconds, jpegs))
            print(f"round {r + 1} {name:14s} {runs[name][-1]}", flush=True)
    summary = {
        name: {
            "fps_median": statistics.median(x["fps"] for x in rows),
            "p50_ms_median": statistics.median(x["p50_ms"] for x in rows),
            "p99_ms_median": statistics.median(x["p99_ms"] for x in rows),
            "errors": sum(x["errors"] for x in rows),
            "runs": rows,
        }
        for name, rows in runs.items()
    }
    base = summary["local"]["fps_median"]
    print(f"\n{args.streams} streams, {args.width} px, {args.seconds:.0f} s x {args.rounds} rounds (medians)")
    print(f"{'variant':16s} {'fps':>7s} {'vs local':>9s} {'p50 ms':>8s} {'p99 ms':>8s} {'errors':>7s}")
    for name, row in summary.items():
        print(f"{name:16s} {row['fps_median']:7.2f} {row['fps_median'] / base:8.2f}x {row['p50_ms_median']:8.1f} "
              f"{row['p99_ms_median']:8.1f} {row['errors']:7d}")
    if args.json:
        args.json.write_text(json.dumps({"streams": args.streams, "width": args.width, "seconds": args.seconds,
                                         "rounds": args.rounds, "variants": summary}, indent=2) + "\n")


if __name__ == "__main__":
    main()
