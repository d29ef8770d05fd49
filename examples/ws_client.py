#!/usr/bin/env python3
"""Stream a video file to a running mask2former-ttt service over its WebSocket API and print every result.

    python examples/ws_client.py VIDEO.mp4 --url ws://127.0.0.1:8000 --frames 20 [--task panoptic] [--api-key KEY]

Protocol (docs/websocket-protocol.md): a text `start` message, then binary frames
(uint32 big-endian header length + JSON header + JPEG), one JSON `result` per processed frame, `stop` at the end.
Needs only `websockets`, `av` (PyAV) and `pillow`; it does not import the project.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import av
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect


def jpeg_frames(path: Path, limit: int, width: int) -> Iterator[bytes]:
    """The first `limit` frames of `path`, scaled down to at most `width` pixels wide, as JPEG bytes."""
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i >= limit:
                return
            image = frame.to_image()
            if image.width > width:
                image = image.resize((width, max(2, round(image.height * width / image.width))))
            buf = io.BytesIO()
            image.save(buf, format="JPEG", quality=85)
            yield buf.getvalue()


def pack_frame(jpeg: bytes, frame_id: int) -> bytes:
    """One binary frame message: u32be(len(header)) + header JSON + image."""
    header = json.dumps({"frame_id": frame_id, "capture_ts": time.time()}).encode()
    return struct.pack(">I", len(header)) + header + jpeg


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


def send_all(ws: ClientConnection, frames: list[bytes], fps: float | None,
             errors: list[BaseException]) -> None:
    """Sender thread: every frame (paced at `fps` when given), then `stop`."""
    try:
        for i, data in enumerate(frames):
            ws.send(pack_frame(data, i))
            if fps:
                time.sleep(1.0 / fps)
        ws.send(json.dumps({"type": "stop"}))
    except ConnectionClosed:
        pass
    except BaseException as exc:  # noqa: BLE001 - reported by the main thread
        errors.append(exc)


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

    frames = list(jpeg_frames(args.video, args.frames, args.width))
    if not frames:
        print(f"error: no frames could be read from {args.video}", file=sys.stderr)
        return 2
    start = {"type": "start", "task": args.task, "policy": args.policy}
    for key in ("method", "preset"):
        if getattr(args, key):
            start[key] = getattr(args, key)
    if args.overlay_dir:
        start["encodings"] = ["rle" if args.task == "instance" else "png", "overlay"]
        args.overlay_dir.mkdir(parents=True, exist_ok=True)
    headers = {"X-API-Key": args.api_key} if args.api_key else None

    with connect(f"{args.url.rstrip('/')}/v1/streams/ws", additional_headers=headers, max_size=None,
                 open_timeout=10) as ws:
        try:
            ws.send(json.dumps(start))
        except ConnectionClosed:
            pass  # refused at once (e.g. a wrong API key): the server's error message is still readable below
        try:
            started = json.loads(ws.recv(timeout=30))
        except ConnectionClosed as exc:
            print(f"error: the server closed the connection: {exc}", file=sys.stderr)
            return 1
        if started["type"] != "started":
            print(f"error: {started.get('code')}: {started.get('message')}", file=sys.stderr)
            return 1
        print(f"started stream {started['stream_id']}: task={started['task']} method={started['method']} "
              f"preset={started['preset']} classes={len(started['class_names'])}", flush=True)
        errors: list[BaseException] = []
        sender = threading.Thread(target=send_all, args=(ws, frames, args.fps, errors), daemon=True)
        sender.start()
        results = 0
        while True:
            try:
                msg = json.loads(ws.recv(timeout=args.timeout))
            except (ConnectionClosed, TimeoutError) as exc:
                print(f"error: connection ended before stop: {exc}", file=sys.stderr)
                return 1
            if msg["type"] == "result":
                results += 1
                print(describe(msg), flush=True)
                if args.overlay_dir and "overlay" in msg["masks"]:
                    jpeg = base64.b64decode(msg["masks"]["overlay"])
                    (args.overlay_dir / f"{msg['frame_id']:06d}.jpg").write_bytes(jpeg)
            elif msg["type"] == "error":
                print(f"server error {msg['code']}: {msg['message']}", file=sys.stderr, flush=True)
            elif msg["type"] == "stop":
                print(f"done: sent {len(frames)} frames, {msg['processed']} processed, {msg['dropped']} dropped, "
                      f"{results} results", flush=True)
                break
        sender.join(5)
        if errors:
            print(f"error while sending: {errors[0]}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
