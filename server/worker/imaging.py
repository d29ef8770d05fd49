"""Decoding of client-sent images (JPEG / PNG) with a pixel-count guard, and the size results are made at."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

MAX_RESULT_SIDE = 640  # results are computed at the frame size scaled down so its long side is at most this


class ImageDecodeError(ValueError):
    """The bytes are not a decodable JPEG/PNG image of an accepted size."""


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """JPEG/PNG bytes -> (H, W, 3) uint8 RGB (a writable array). The size is checked before decoding."""
    try:
        with Image.open(io.BytesIO(data), formats=["JPEG", "PNG"]) as img:
            w, h = img.size
            if w * h > max_pixels:
                raise ImageDecodeError(f"image is {w}x{h} = {w * h} pixels; the limit is {max_pixels}")
            return np.array(img.convert("RGB"))
    except ImageDecodeError:
        raise
    except Exception as exc:  # PIL raises many types for damaged data
        raise ImageDecodeError(f"cannot decode image: {type(exc).__name__}: {exc}") from exc


def result_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """(h, w) of results: the frame size scaled down (never up) so its long side is at most `max_side`."""
    scale = min(1.0, max_side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))
