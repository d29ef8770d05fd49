#!/usr/bin/env python3
"""Stream a video file to a running mask2former-ttt service over its WebSocket API and print every result.

    python examples/ws_client.py VIDEO.mp4 --url ws://127.0.0.1:8000 --frames 20 [--task panoptic] [--api-key KEY]

Built on the project's Python client, `mask2former_ttt.client` (docs/api.md): `Client.stream` sends JPEG frames
with back-pressure (the protocol: docs/websocket-protocol.md) and yields one result dict per processed frame.
"""

from __future__ import annotations

import argparse
import base64
import sys
from pathlib import Path

from mask2former_ttt.client import Client, ClientError, SourceError


def describe(result: dict) -> str:
    """One line per result: segments by area, TTT loss and timings."""
    total = result["width"] * result["height"] or 1
    segs = sorted(result["segments_info"], key=lambda s: -s.get("area", 0))
    parts = ", ".join(f"{s['name']} {100 * s.get('area', 0) / total:.0f}%" for s in segs[:4])
    more = f" +{len(segs) - 4}" if len(segs) > 4 else ""
    loss = result["ttt"]["loss"]
    t = result["timings_ms"]
    return (f"frame {result['frame_id']}: {result['task']} {result['width']}x{result['height']} "
            f"{len(segs)} segments [{parts}{more}] loss={'n/a' if loss is None else f'{loss:.4f}'} "
            f"ttt={t.get('ttt', 0):.0f}ms predict={t.get('predict', 0):.0f}ms "
            f"end_to_end={t.get('end_to_end', 0):.0f}ms dropped={result['dropped']}")


def print_error(msg: dict) -> None:
    """A per-frame server error (the stream goes on)."""
    print(f"server error {msg['code']}: {msg['message']}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("video", type=Path, help="video file to stream")
    parser.add_argument("--url", default="ws://127.0.0.1:8000", help="service base URL (ws:// or wss://)")
    parser.add_argument("--frames", type=int, default=20, help="number of frames to send")
    parser.add_argument("--width", type=int, default=320, help="scale frames down to this width")
    parser.add_argument("--task", default="semantic", choices=["semantic", "instance", "panoptic"])
    parser.add_argument("--method", help="TTT method (default: the server's)")
    parser.add_argument("--preset", help="TTT preset (default: the server's)")
    parser.add_argument("--policy", default="block", choices=["block", "latest"],
                        help="block: every frame gets a result; latest: live behaviour, may drop")
    parser.add_argument("--fps", type=float,
                        help="pace sending at this rate (default: as fast as the server takes them)")
    parser.add_argument("--api-key", help="API key when the service has M2F_API_KEYS")
    parser.add_argument("--overlay-dir", type=Path, help="also request overlays and save them here as JPEGs")
    parser.add_argument("--timeout", type=float, default=300.0, help="give up waiting for a message after this many s")
    args = parser.parse_args(argv)

    encodings = None
    if args.overlay_dir:
        encodings = ["rle" if args.task == "instance" else "png", "overlay"]
        args.overlay_dir.mkdir(parents=True, exist_ok=True)
    with Client(args.url, api_key=args.api_key) as client:
        stream = client.stream(args.video, task=args.task, method=args.method, preset=args.preset,
                               policy=args.policy, encodings=encodings, max_width=args.width,
                               max_frames=args.frames, fps=args.fps, timeout_s=args.timeout, on_error=print_error)
        results = 0
        try:
            with stream:
                started = stream.started or {}
                print(f"started stream {started['stream_id']}: task={started['task']} method={started['method']} "
                      f"preset={started['preset']} classes={len(started['class_names'])}", flush=True)
                for result in stream:
                    results += 1
                    print(describe(result), flush=True)
                    if args.overlay_dir and "overlay" in result["masks"]:
                        jpeg = base64.b64decode(result["masks"]["overlay"])
                        (args.overlay_dir / f"{result['frame_id']:06d}.jpg").write_bytes(jpeg)
        except SourceError as exc:
            print(f"error: {exc.message}", file=sys.stderr)
            return 2
        except ClientError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    summary = stream.summary or {}
    print(f"done: sent {stream.sent} frames, {summary.get('processed')} processed, {summary.get('dropped')} dropped, "
          f"{results} results", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
