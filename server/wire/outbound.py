"""Outbound wire format: the JSON messages the service sends for what the device worker delivers (results are
encoded off the event loop: RLE / PNG / JPEG are CPU work)."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import time
from typing import Any, Sequence

from starlette.websockets import WebSocket, WebSocketDisconnect

from mask2former_ttt.outputs import encode_masks, segments_info
from mask2former_ttt.outputs.frame import jpeg_encode
from mask2former_ttt.ttt.view import TTTView
from server.metrics import Metrics
from server.wire.inbound import close_reason
from server.events import ControlReply, FrameError, FrameResult, SessionClosed


def _b64(value: Any) -> Any:
    return base64.b64encode(value).decode("ascii") if isinstance(value, (bytes, bytearray)) else value


def result_message(
    fr: FrameResult, encodings: Sequence[str], class_names: Sequence[str], colors: Sequence[Sequence[int]] | None = None
) -> dict:
    """The JSON result of one frame; computes the `encode` and `end_to_end` timings (ms). `colors`: the checkpoint's
    `class_colors` for the overlay encoding (default: by class name)."""
    t0 = time.perf_counter()
    segs = segments_info(fr.task, fr.step.result, class_names)
    encoded = encode_masks(fr.task, fr.step.result, encodings, segs, fr.image, class_names=class_names, colors=colors)
    masks = {k: _b64(v) for k, v in encoded.items()}
    t1 = time.perf_counter()
    timings = {**fr.step.timings_s, "encode": t1 - t0, "end_to_end": t1 - fr.received}
    height, width = _result_hw(fr)
    return {
        "type": "result",
        "stream_id": fr.stream_id,
        "frame_id": fr.frame_id,
        "frame_index": fr.index,
        "capture_ts": fr.capture_ts,
        "pts_s": fr.pts_s,
        "task": fr.task,
        "width": width,
        "height": height,
        "frame_width": int(fr.image.shape[1]),
        "frame_height": int(fr.image.shape[0]),
        "masks": masks,
        "segments_info": segs,
        "ttt": fr.step.ttt_record(),
        "timings_ms": {k: round(v * 1000, 3) for k, v in timings.items()},
        "dropped": fr.dropped,
        "memory_bytes": fr.memory_bytes,
        **({"ttt_view": ttt_view_message(fr.ttt_view)} if fr.ttt_view is not None else {}),
    }


def ttt_view_message(view: TTTView) -> dict:
    """The `ttt_view` field of a result: base64 JPEGs of the masked input and the reconstruction, (h, w) and ℓ_s."""
    height, width = view.masked.shape[:2]
    return {
        "width": int(width),
        "height": int(height),
        "masked_jpeg": _b64(jpeg_encode(view.masked)),
        "reconstruction_jpeg": _b64(jpeg_encode(view.reconstruction)),
        "loss": view.loss if math.isfinite(view.loss) else None,
    }


def _result_hw(fr: FrameResult) -> tuple[int, int]:
    r = fr.step.result
    shape = (
        r.label_map.shape if fr.task == "semantic" else (r.id_map.shape if fr.task == "panoptic" else r.masks.shape[1:])
    )
    return int(shape[0]), int(shape[1])


def error_message(code: str, message: str, frame_id: Any = None, **extra: Any) -> dict:
    msg = {"type": "error", "code": code, "message": message}
    if frame_id is not None:
        msg["frame_id"] = frame_id
    msg.update(extra)
    return msg


async def close_with_error(websocket: WebSocket, close_code: int, code: str, message: str) -> None:
    """Send an `error` message, then close with `close_code` (reason: the message cut to what a close frame
    holds); a client that is already gone is ignored."""
    try:
        await websocket.send_text(json.dumps(error_message(code, message)))
        await websocket.close(close_code, reason=close_reason(message))
    except (WebSocketDisconnect, RuntimeError):
        pass


def frame_error_message(err: FrameError) -> dict:
    return error_message(err.code, err.message, err.frame_id, stream_id=err.stream_id)


async def outgoing_message(
    obj: Any, class_names: Sequence[str], metrics: Metrics, colors: Sequence[Sequence[int]] | None = None
) -> dict | None:
    """The JSON message for an object delivered by the worker (None for SessionClosed).

    Results are encoded in a worker thread and their encode / end-to-end latencies recorded.
    """
    if isinstance(obj, FrameResult):
        loop = asyncio.get_running_loop()
        msg = await loop.run_in_executor(None, result_message, obj, obj.encodings, class_names, colors)
        metrics.observe_timings({k: msg["timings_ms"][k] / 1000 for k in ("encode", "end_to_end")})
        return msg
    if isinstance(obj, FrameError):
        return frame_error_message(obj)
    if isinstance(obj, ControlReply):
        if obj.error:
            return error_message(f"{obj.name}_failed", obj.error, stream_id=obj.stream_id)
        return {"type": obj.name, "stream_id": obj.stream_id, **obj.payload}
    if isinstance(obj, SessionClosed):
        return None
    if isinstance(obj, dict):
        return obj
    raise TypeError(f"unexpected delivery {type(obj).__name__}")
