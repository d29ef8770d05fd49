"""Decode the masks of a `result` message (docs/websocket-protocol.md §3) into numpy arrays."""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
from PIL import Image


def decode_png(b64: str, task: str = "semantic") -> np.ndarray:
    """A base64 `masks.png` -> (H, W) int array: semantic class ids, instance ids (0 = none, i + 1 =
    `segments_info[i]`), or for panoptic the COCO-panoptic segment id R + 256·G + 256²·B."""
    image = np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))))
    if task == "panoptic" and image.ndim == 3:
        rgb = image[..., :3].astype(np.int64)
        return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]
    return image.astype(np.int64)


def decode_rle(rles: list[dict]) -> np.ndarray:
    """`masks.rle` (COCO compressed RLEs with ASCII `counts`) -> (N, H, W) bool, one mask per segment."""
    from pycocotools import mask as mask_utils

    if not rles:
        return np.zeros((0, 0, 0), dtype=bool)
    coco = [{"size": list(r["size"]), "counts": r["counts"].encode("ascii")} for r in rles]
    return np.moveaxis(mask_utils.decode(coco), -1, 0).astype(bool)


def decode_polygons(polygons: list[list[list[float]]], height: int, width: int) -> np.ndarray:
    """`masks.polygons` (COCO polygons per segment) -> (N, height, width) bool, rasterised by pycocotools."""
    from pycocotools import mask as mask_utils

    out = np.zeros((len(polygons), height, width), dtype=bool)
    for i, polys in enumerate(polygons):
        if polys:
            out[i] = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polys, height, width))).astype(bool)
    return out


def decode_overlay(b64: str) -> np.ndarray:
    """A base64 `masks.overlay` JPEG -> (H, W, 3) uint8 RGB."""
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"))


def decode_masks(result: dict[str, Any]) -> dict[str, np.ndarray]:
    """Every encoding present in `result["masks"]`, decoded: `png` (H, W) ids, `rle` and `polygons` (N, H, W) bool,
    `overlay` (H, W, 3) RGB; H and W are the result's `height` and `width`."""
    masks = result.get("masks", {})
    out: dict[str, np.ndarray] = {}
    if "png" in masks:
        out["png"] = decode_png(masks["png"], result.get("task", "semantic"))
    if "rle" in masks:
        out["rle"] = decode_rle(masks["rle"])
        if not masks["rle"]:
            out["rle"] = np.zeros((0, result["height"], result["width"]), dtype=bool)
    if "polygons" in masks:
        out["polygons"] = decode_polygons(masks["polygons"], result["height"], result["width"])
    if "overlay" in masks:
        out["overlay"] = decode_overlay(masks["overlay"])
    return out
