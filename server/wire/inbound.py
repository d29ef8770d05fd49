"""Inbound wire format of the streaming API (see docs/websocket-protocol.md): what clients send.

Client -> server on `/v1/streams/ws`:
- text `{"type": "start", ...}` first (StartMessage), then text controls (reset, set_task, stats, checkpoint,
  restore, stop);
- binary frames: `uint32 big-endian N` + `N bytes of UTF-8 JSON header {"frame_id", "capture_ts"}` + JPEG/PNG bytes.

Frames are validated here (sizes, header, image magic) but decoded lazily by the device worker, so frames that the
`latest` policy drops cost no decoding.
"""

from __future__ import annotations

import json
import struct
from typing import Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mask2former_ttt.outputs import DEFAULT_ENCODINGS
from model.config import Task
from server.settings import Policy

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def image_format(data: bytes) -> str | None:
    """'jpeg', 'png' or None, from the leading magic bytes."""
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    if data.startswith(PNG_MAGIC):
        return "png"
    return None


Encoding = Literal["png", "rle", "polygons", "overlay"]
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
CLOSE_SERVICE_RESTART = 1012
CLOSE_TRY_AGAIN = 1013
MAX_CLOSE_REASON_BYTES = 123  # RFC 6455 §5.5: a control frame's payload is at most 125 bytes, 2 of them the code


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
    score_threshold: float | None = Field(None, ge=0, le=1, description="weaker instances / segments are dropped")
    min_area: int | None = Field(None, ge=0, le=1 << 24, description="smaller instances / segments (px) are dropped")
    ttt_view: int = Field(
        0, ge=0, le=10_000, description="every N-th result carries the TTT view (masked input, reconstruction); 0 = off"
    )
    api_key: str | None = Field(None, repr=False, description="API key (browsers: instead of a header)")

    @field_validator("encodings")
    @classmethod
    def _dedupe(cls, v: list[str] | None) -> list[str] | None:
        return list(dict.fromkeys(v)) if v is not None else None


class SetTaskMessage(_Msg):
    type: Literal["set_task"]
    task: Task
    encodings: list[Encoding] | None = None
    score_threshold: float | None = Field(None, ge=0, le=1)  # unset: the stream's current value
    min_area: int | None = Field(None, ge=0, le=1 << 24)


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


def close_reason(message: str) -> str:
    """`message` cut to fit a close frame (at most 123 UTF-8 bytes, never inside a character)."""
    return message.encode("utf-8")[:MAX_CLOSE_REASON_BYTES].decode("utf-8", errors="ignore")


def _loads(text: str, what: str, code: str, not_json: str = "valid JSON") -> object:
    """json.loads; ProtocolError (1007, `code`) naming `what` when it is not JSON or is nested deeper than the
    parser's recursion limit (CPython raises RecursionError there, not JSONDecodeError)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProtocolError(CLOSE_INVALID_PAYLOAD, code, f"{what} is not {not_json}: {exc}") from None
    except RecursionError:
        raise ProtocolError(
            CLOSE_INVALID_PAYLOAD, code, f"{what} is JSON nested too deeply (arrays / objects inside each other)"
        ) from None


def encodings_for(task: str, encodings: Sequence[str] | None) -> tuple[str, ...]:
    return tuple(encodings) if encodings else DEFAULT_ENCODINGS[task]


def parse_text(text: str) -> dict:
    """A text message as a JSON object with a string `type`; ProtocolError (1007) otherwise."""
    msg = _loads(text, "text message", "bad_json")
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
        text = data[HEADER_LEN.size : HEADER_LEN.size + n].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(CLOSE_INVALID_PAYLOAD, "bad_frame", f"frame header is not UTF-8 JSON: {exc}") from None
    header = _loads(text, "frame header", "bad_frame", "UTF-8 JSON") if n else {}
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
