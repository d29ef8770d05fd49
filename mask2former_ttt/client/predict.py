"""`POST /v1/predict` from the client: one image (JPEG / PNG bytes, a file path, or an RGB array) -> its result."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

import httpx
import numpy as np
from PIL import Image

from .http_api import check

Image_ = Union[bytes, str, Path, np.ndarray]
JPEG_MAGIC, PNG_MAGIC = b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"


def image_body(image: Image_) -> tuple[bytes, str]:
    """The request body and its content type: JPEG / PNG bytes as they are, a file's bytes, or an (H, W, 3) uint8
    RGB array as PNG (lossless). ValueError for bytes that are neither JPEG nor PNG."""
    if isinstance(image, np.ndarray):
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(buf, format="PNG")
        return buf.getvalue(), "image/png"
    data = image if isinstance(image, bytes) else Path(image).read_bytes()
    if data.startswith(JPEG_MAGIC):
        return data, "image/jpeg"
    if data.startswith(PNG_MAGIC):
        return data, "image/png"
    raise ValueError("the image is neither JPEG nor PNG (give JPEG / PNG bytes, a path to one, or an RGB array)")


def predict(http: httpx.Client, image: Image_, params: dict[str, Any]) -> dict[str, Any]:
    """`POST /v1/predict` with `image` as the body and `params` as the query; the parsed result (ClientError
    subclasses for refusals)."""
    body, ctype = image_body(image)
    return check(http.post("/v1/predict", content=body, headers={"content-type": ctype}, params=params)).json()


def encoding_list(encodings: str | Sequence[str] | None) -> list[str] | None:
    """One encoding name or several -> the list the query repeats (None: the task's default)."""
    return [encodings] if isinstance(encodings, str) else (list(encodings) if encodings is not None else None)
