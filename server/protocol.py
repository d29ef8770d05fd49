"""Wire formats of the streaming API (see docs/websocket-protocol.md).

Client -> server on `/v1/streams/ws`:
- text `{"type": "start", ...}` first (StartMessage), then text controls (reset, set_task, stats, checkpoint,
  restore, stop);
- binary frames: `uint32 big-endian N` + `N bytes of UTF-8 JSON header {"frame_id", "capture_ts"}` + JPEG/PNG bytes.

Server -> client: text JSON messages with a `type`: started, result, error, reset, set_task, stats, checkpoint,
restore, closed.
"""

from __future__ import annotations

import base64
import json
import struct
import time
from typing import Any, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mask2former_ttt.outputs import DEFAULT_ENCODINGS, encode_masks, segments_info
from server.settings import Policy, Task
from server.worker.imaging import image_format
from server.worker.stream_session import FrameError, FrameResult

Encoding = Literal["png", "rle", "overlay"]
HEADER_LEN = struct.Struct(">I")
MAX_HEADER_BYTES = 4096

# WebSocket close codes used by the service (RFC 6455 §7.4.1 and the IANA registry).
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_UNSUPPORTED = 1003
CLOSE_INVALID_PAYLOAD = 1007
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011
CLOSE_TRY_AGAIN = 1013


class ProtocolError(ValueError):
    """A message that breaks the protocol: the server sends an error and closes with `close_code`."""

    def __init__(self, close_code: int, code: str, message: str) -> None:
        super().__init__(message)
        self.close_code = close_code
        self.code = code
        self.message = message


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StartMessage(_Msg):
    """Opens a stream. Unset method/preset use the server defaults; unset encodings use the task's default."""

    type: Literal["start"]
    task: Task = "semantic"
    method: str | None = None
    preset: str | None = None
    encodings: list[Encoding] | None = None
    policy: Policy = "latest"
    queue_size: int | None = Field(None, ge=1, le=64)

    @field_validator("encodings")
    @classmethod
    def _dedupe(cls, v: list[str] | None) -> list[str] | None:
        return list(dict.fromkeys(v)) if v is not None else None


class SetTaskMessage(_Msg):
    type: Literal["set_task"]
    task: Task
    encodings: list[Encoding] | None = None


class RestoreMessage(_Msg):
    type: Literal["restore"]
    checkpoint_id: str


class SimpleMessage(_Msg):
    type: Literal["reset", "stats", "checkpoint", "stop"]


CONTROL_TYPES = {
    "set_task": SetTaskMessage,
    "restore": RestoreMessage,
    "reset": SimpleMessage,
    "stats": SimpleMessage,
    "checkpoint": SimpleMessage,
    "stop": SimpleMessage,
}


def encodings_for(task: str, encodings: Sequence[str] | None) -> tuple[str, ...]:
    return tuple(encodings) if encodings else DEFAULT_ENCODINGS[task]


def parse_text(text: str) -> dict:
    """A text message as a JSON object with a string `type`; ProtocolError (1007) otherwise."""
    try:
        msg = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProtocolError(CLOSE_INVALID_PAYLOAD, "bad_json", f"text message is not valid JSON: {exc}") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise ProtocolError(CLOSE_INVALID_PAYLOAD, "bad_message", 'text messages must be JSON objects with a "type"')
    return msg


def parse_frame(data: bytes, max_bytes: int) -> tuple[dict, bytes]:
    """Split a binary frame message into (header, image bytes), validating sizes, JSON and image magic."""
    if len(data) > max_bytes:
        raise ProtocolError(
            CLOSE_TOO_BIG, "frame_too_big", f"frame message is {len(data)} bytes; the limit is {max_bytes}"
        )
    if len(data) < HEADER_LEN.size:
        raise ProtocolError(CLOSE_INVALID_PAYLOAD, "bad_frame", "frame message shorter than its 4-byte header length")
    (n,) = HEADER_LEN.unpack_from(data)
    if n > MAX_HEADER_BYTES or HEADER_LEN.size + n > len(data):
        raise ProtocolError(
            CLOSE_INVALID_PAYLOAD,
            "bad_frame",
            f"frame header length {n} is invalid (message has {len(data)} bytes, header limit {MAX_HEADER_BYTES})",
        )
    try:
        header = json.loads(data[HEADER_LEN.size : HEADER_LEN.size + n].decode("utf-8")) if n else {}
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(CLOSE_INVALID_PAYLOAD, "bad_frame", f"frame header is not UTF-8 JSON: {exc}") from None
    if not isinstance(header, dict):
        raise ProtocolError(CLOSE_INVALID_PAYLOAD, "bad_frame", "frame header must be a JSON object")
    fid = header.get("frame_id")
    if fid is not None and not isinstance(fid, (int, str)):
        raise ProtocolError(CLOSE_INVALID_PAYLOAD, "bad_frame", "frame_id must be an integer or a string")
    ts = header.get("capture_ts")
    if ts is not None and not isinstance(ts, (int, float)):
        raise ProtocolError(CLOSE_INVALID_PAYLOAD, "bad_frame", "capture_ts must be a number")
    image = data[HEADER_LEN.size + n :]
    if not image:
        raise ProtocolError(CLOSE_INVALID_PAYLOAD, "bad_frame", "frame message has a header but no image bytes")
    if image_format(image) is None:
        raise ProtocolError(
            CLOSE_UNSUPPORTED, "unsupported_image", "frame image is neither JPEG nor PNG (bad magic bytes)"
        )
    return header, image


def pack_frame(image: bytes, frame_id: int | str | None = None, capture_ts: float | None = None) -> bytes:
    """Client-side helper: build a binary frame message."""
    header = json.dumps({"frame_id": frame_id, "capture_ts": capture_ts}).encode()
    return HEADER_LEN.pack(len(header)) + header + image


def _b64(value: Any) -> Any:
    return base64.b64encode(value).decode("ascii") if isinstance(value, (bytes, bytearray)) else value


def result_message(fr: FrameResult, encodings: Sequence[str], class_names: Sequence[str]) -> dict:
    """The JSON result of one frame; computes the `encode` and `end_to_end` timings (ms)."""
    t0 = time.perf_counter()
    segs = segments_info(fr.task, fr.step.result, class_names)
    encoded = encode_masks(fr.task, fr.step.result, encodings, segs, fr.image, len(class_names))
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


def frame_error_message(err: FrameError) -> dict:
    return error_message(err.code, err.message, err.frame_id, stream_id=err.stream_id)
