"""The streaming API's binary frame message (docs/websocket-protocol.md §2), re-implemented so the client does
not import the server: `uint32 big-endian N` + N bytes of UTF-8 JSON header + JPEG/PNG bytes."""

from __future__ import annotations

import io
import json
import struct
import time
from typing import Any

import numpy as np
from PIL import Image

HEADER_LEN = struct.Struct(">I")
JPEG_QUALITY = 85


def pack_frame(image: bytes, frame_id: int | str | None = None, capture_ts: float | None = None) -> bytes:
    """One binary frame message: header `{"frame_id", "capture_ts"}` (capture_ts defaults to now) + image."""
    header: dict[str, Any] = {"capture_ts": time.time() if capture_ts is None else capture_ts}
    if frame_id is not None:
        header["frame_id"] = frame_id
    data = json.dumps(header).encode()
    return HEADER_LEN.pack(len(data)) + data + image


def to_jpeg(rgb: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """(H, W, 3) uint8 RGB -> JPEG bytes."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
