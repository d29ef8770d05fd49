"""`POST /v1/predict`'s options (query parameters), its response model (a WebSocket frame result) and its request
body in the OpenAPI schema (the body is read by hand: raw image or multipart `file`, server/image_body.py)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from model.config import Task
from server.params import ID_PATTERN, MAX_ID_CHARS
from server.wire.inbound import Encoding


class PredictOptions(BaseModel):
    """What to predict and how to encode it; unset fields take the WebSocket `start` message's defaults."""

    model_config = ConfigDict(extra="forbid")

    task: Task = "semantic"
    stream_id: str | None = Field(
        None, min_length=1, max_length=MAX_ID_CHARS, pattern=ID_PATTERN,
        description="predict with this live stream's adapted weights (one of the caller's WebSocket streams, by the "
        "`stream_id` of its `started` message, or cameras, by id); unset: the initial weights (`main_only`)",
    )
    encodings: list[Encoding] | None = Field(
        None, description="mask encodings (repeat the parameter); default: semantic/panoptic png, instance rle"
    )
    score_threshold: float | None = Field(None, ge=0, le=1, description="weaker instances / segments are dropped")
    min_area: int | None = Field(None, ge=0, le=1 << 24, description="smaller instances / segments (px) are dropped")


class PredictResult(BaseModel):
    """The result of one image: the fields of a WebSocket `result` message (docs/websocket-protocol.md §3).
    `frame_index` counts the frames the predicting weights had adapted on (0 without `stream_id`)."""

    type: str = "result"
    stream_id: str
    frame_id: Any = None
    frame_index: int
    capture_ts: float | None = None
    pts_s: float | None = None
    task: Task
    width: int
    height: int
    frame_width: int
    frame_height: int
    masks: dict[str, Any] = Field(description="the requested encodings: png / overlay base64, rle, polygons")
    segments_info: list[dict[str, Any]]
    ttt: dict[str, Any]
    timings_ms: dict[str, float]
    dropped: int
    memory_bytes: int


class UnusableInput(BaseModel):
    """422: the image is unusable (`detail` says why, as a string) or an option is invalid (FastAPI's list of
    `{loc, msg, type}`)."""

    detail: str | list[dict[str, Any]]


PREDICT_REQUEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary", "description": "a JPEG or PNG"}},
                }
            },
        },
    }
}
