"""Mask encodings: COCO RLE (pycocotools), PNG label maps and the COCO-panoptic RGB id encoding.

Inputs are numpy arrays or torch tensors (converted once with `as_numpy`); outputs are plain Python / bytes so
they can go straight into JSON (RLE `counts` are ASCII strings) or files.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

# The COCO-panoptic RGB id codec has one definition, next to the dataset readers and writers that also use it.
from mask2former_ttt.data.formats import id_to_rgb, rgb_to_id  # noqa: F401  (rgb_to_id: part of this module's API)


def as_numpy(x: Any) -> np.ndarray:
    """A torch tensor (any device) or array-like -> numpy array."""
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    return np.asarray(x)


# ---------------------------------------------------------------------------------------------- RLE


def rle_encode(masks: Any) -> list[dict]:
    """(N, H, W) bool masks -> N COCO RLEs `{"size": [H, W], "counts": str}` (compressed, JSON-ready)."""
    arr = as_numpy(masks).astype(np.uint8, copy=False)
    if arr.ndim != 3:
        raise ValueError(f"expected (N, H, W) masks, got shape {arr.shape}")
    if arr.shape[0] == 0:
        return []
    rles = mask_utils.encode(np.asfortranarray(arr.transpose(1, 2, 0)))
    return [{"size": [int(r["size"][0]), int(r["size"][1])], "counts": r["counts"].decode("ascii")} for r in rles]


def rle_decode(rles: list[dict]) -> np.ndarray:
    """Inverse of `rle_encode`: N RLEs -> (N, H, W) bool."""
    if not rles:
        return np.zeros((0, 0, 0), dtype=bool)
    coco = [{"size": r["size"], "counts": r["counts"].encode("ascii")} for r in rles]
    return mask_utils.decode(coco).transpose(2, 0, 1).astype(bool)


def mask_bboxes(masks: Any) -> np.ndarray:
    """(N, H, W) bool masks -> (N, 4) int64 COCO boxes [x, y, w, h] in pixels (what `pycocotools.mask.toBbox` gives
    for each mask's RLE; zeros for an empty mask)."""
    m = as_numpy(masks).astype(bool, copy=False)
    if m.ndim != 3:
        raise ValueError(f"expected (N, H, W) masks, got shape {m.shape}")
    rows, cols = m.any(axis=2), m.any(axis=1)  # (N, H), (N, W)
    present = rows.any(axis=1)
    y0, x0 = rows.argmax(axis=1), cols.argmax(axis=1)
    y1 = m.shape[1] - 1 - rows[:, ::-1].argmax(axis=1)
    x1 = m.shape[2] - 1 - cols[:, ::-1].argmax(axis=1)
    boxes = np.stack([x0, y0, x1 - x0 + 1, y1 - y0 + 1], axis=1).astype(np.int64)
    boxes[~present] = 0
    return boxes


def instance_id_map(masks: Any, ids: Any = None) -> np.ndarray:
    """(N, H, W) bool masks sorted by decreasing score -> (H, W) int64 ids: 0 = none, else `ids[i]` for instance
    i ((N,) persistent track ids, see `mask2former_ttt.tracking`), or i + 1 without ids.

    Where masks overlap the first (best-scoring) one wins.
    """
    m = as_numpy(masks).astype(bool, copy=False)
    if m.shape[0] == 0:
        return np.zeros(m.shape[1:], dtype=np.int64)
    index = m.argmax(axis=0)
    out = index.astype(np.int64) + 1 if ids is None else as_numpy(ids).astype(np.int64)[index]
    out[~m.any(axis=0)] = 0
    return out


# ---------------------------------------------------------------------------------------------- PNG


def png_encode(array: np.ndarray, compress_level: int = 1) -> bytes:
    """(H, W) uint8/uint16 or (H, W, 3) uint8 -> PNG bytes (fast compression by default)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def png_decode(data: bytes) -> np.ndarray:
    """PNG bytes -> numpy array (mode kept: L -> uint8, I;16 -> uint16, RGB -> (H, W, 3) uint8)."""
    with Image.open(io.BytesIO(data), formats=["PNG"]) as img:
        return np.asarray(img)


def label_map_png(label_map: Any) -> bytes:
    """(H, W) class (or instance) ids -> PNG: 8-bit grey when all ids < 256, else 16-bit grey."""
    lm = as_numpy(label_map)
    if lm.size and (lm.min() < 0 or lm.max() > 65535):
        raise ValueError("label ids must lie in [0, 65535] for a PNG label map")
    dtype = np.uint8 if lm.size == 0 or lm.max() < 256 else np.uint16
    return png_encode(lm.astype(dtype))


# ---------------------------------------------------------------------------------------------- panoptic


def panoptic_png(id_map: Any) -> bytes:
    """(H, W) segment ids -> COCO-panoptic RGB PNG bytes."""
    return png_encode(id_to_rgb(id_map))


def segment_bboxes(id_map: Any, num_ids: int) -> np.ndarray:
    """(num_ids, 4) int64 COCO boxes [x, y, w, h] of every id in `[0, num_ids)` (zeros for absent ids).

    One pass over the pixels with `np.minimum.at` / `np.maximum.at`; no per-segment mask is built.
    """
    ids = as_numpy(id_map).astype(np.int64)
    h, w = ids.shape
    flat = ids.ravel()
    ys, xs = np.divmod(np.arange(flat.size), w)
    x0 = np.full(num_ids, w, dtype=np.int64)
    y0 = np.full(num_ids, h, dtype=np.int64)
    x1 = np.full(num_ids, -1, dtype=np.int64)
    y1 = np.full(num_ids, -1, dtype=np.int64)
    np.minimum.at(x0, flat, xs)
    np.minimum.at(y0, flat, ys)
    np.maximum.at(x1, flat, xs)
    np.maximum.at(y1, flat, ys)
    present = x1 >= 0
    boxes = np.stack([x0, y0, x1 - x0 + 1, y1 - y0 + 1], axis=1)
    boxes[~present] = 0
    return boxes
