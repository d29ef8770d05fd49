"""One frame's result as encoded payloads: segments_info plus the requested mask encodings.

`encode_masks` is shared by the service (which base64s the bytes into JSON) and the offline CLI (which writes
them to files). Encodings:

- `png`: semantic label map (8/16-bit grey); instance id map (0 = none, i + 1 = instance i);
  panoptic COCO-panoptic RGB id map.
- `rle`: one COCO RLE per class present (semantic), per instance, or per segment (panoptic).
- `polygons`: the same masks as COCO polygons (outer contours, simplified: `outputs.polygons`), a list of
  `[x1, y1, x2, y2, ...]` per mask.
- `overlay`: JPEG of the frame with the result drawn on it (all tasks).

`rle` and `polygons` lists are aligned with `segments_info` (same order). Instances and panoptic segments carry
`bbox` [x, y, w, h] (COCO) in `segments_info`.
"""

from __future__ import annotations

import io
from typing import Any, Literal, Sequence

import numpy as np
from PIL import Image

from mask2former_ttt.outputs.masks import (
    as_numpy,
    instance_id_map,
    label_map_png,
    mask_bboxes,
    panoptic_png,
    rle_encode,
)
from mask2former_ttt.outputs.overlay import overlay
from mask2former_ttt.outputs.polygons import polygons_of

Encoding = Literal["png", "rle", "polygons", "overlay"]
ENCODINGS: tuple[str, ...] = ("png", "rle", "polygons", "overlay")
DEFAULT_ENCODINGS: dict[str, tuple[str, ...]] = {"semantic": ("png",), "instance": ("rle",), "panoptic": ("png",)}


def _name(class_names: Sequence[str], c: int) -> str:
    return class_names[c] if 0 <= c < len(class_names) else str(c)


def segments_info(kind: str, result: Any, class_names: Sequence[str] = ()) -> list[dict]:
    """COCO-style segment descriptions of a post-processing result.

    semantic: one per class present `{id = category_id, category_id, name, area}`;
    instance: one per instance `{id = i + 1, category_id, name, score, area, bbox, isthing}`;
    panoptic: the result's own segments_info with `name` and `bbox` added.
    `bbox` is the COCO box [x, y, w, h] of the segment's pixels (`pycocotools.mask.toBbox` of its RLE).
    """
    if kind == "semantic":
        lm = as_numpy(result.label_map).ravel()
        counts = np.bincount(lm, minlength=len(class_names))
        return [
            {"id": int(c), "category_id": int(c), "name": _name(class_names, int(c)), "area": int(counts[c])}
            for c in np.flatnonzero(counts)
        ]
    if kind == "instance":
        classes = as_numpy(result.classes).tolist()
        scores = as_numpy(result.scores).tolist()
        track_ids = as_numpy(result.ids).tolist() if result.ids is not None else range(1, len(classes) + 1)
        areas = as_numpy(result.masks).reshape(len(classes), -1).sum(axis=1).tolist() if classes else []
        boxes = mask_bboxes(result.masks).tolist() if classes else []
        return [
            {
                "id": int(i),
                "category_id": int(c),
                "name": _name(class_names, int(c)),
                "score": round(float(s), 5),
                "area": int(a),
                "bbox": box,
                "isthing": True,
            }
            for i, c, s, a, box in zip(track_ids, classes, scores, areas, boxes, strict=True)
        ]
    if kind == "panoptic":
        ids = as_numpy(result.id_map)
        wanted = np.array([int(s["id"]) for s in result.segments_info], dtype=ids.dtype)
        boxes = mask_bboxes(ids[None] == wanted[:, None, None]).tolist() if len(wanted) else []
        return [
            {**s, "name": _name(class_names, int(s["category_id"])), "score": round(float(s["score"]), 5), "bbox": box}
            for s, box in zip(result.segments_info, boxes, strict=True)
        ]
    raise ValueError(f"unknown result kind {kind!r}")


def segment_masks(kind: str, result: Any, segments: list[dict]) -> np.ndarray:
    """(N, H, W) bool: the mask of each entry of `segments` (`segments_info(kind, result)`): the instance masks, or
    the pixels of each class (semantic) / segment id (panoptic)."""
    if kind == "instance":
        return as_numpy(result.masks).astype(bool, copy=False)
    ids = as_numpy(result.label_map if kind == "semantic" else result.id_map)
    wanted = np.array([s["id"] for s in segments], dtype=ids.dtype)
    return ids[None] == wanted[:, None, None]


def jpeg_encode(rgb: np.ndarray, quality: int = 80) -> bytes:
    """(H, W, 3) uint8 -> JPEG bytes."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def encode_masks(
    kind: str,
    result: Any,
    encodings: Sequence[str],
    segments: list[dict],
    image: np.ndarray | None = None,
    num_classes: int = 0,
    class_names: Sequence[str] | None = None,
    colors: Sequence[Sequence[int]] | None = None,
) -> dict[str, Any]:
    """The requested encodings of `result` -> {"png": bytes, "rle": [RLE, ...], "polygons": [[polygon, ...], ...],
    "overlay": JPEG bytes}.

    `segments` is `segments_info(kind, result, ...)` (RLEs follow its order); `image` (H, W, 3) uint8 is needed for
    `overlay`, drawn with `class_names` / `colors` (see `overlay.overlay`).
    """
    out: dict[str, Any] = {}
    unknown = set(encodings) - set(ENCODINGS)
    if unknown:
        raise ValueError(f"unknown encodings {sorted(unknown)}; choose from {list(ENCODINGS)}")
    if "png" in encodings:
        if kind == "semantic":
            out["png"] = label_map_png(result.label_map)
        elif kind == "instance":
            out["png"] = label_map_png(instance_id_map(result.masks, result.ids))
        else:
            out["png"] = panoptic_png(result.id_map)
    if "rle" in encodings or "polygons" in encodings:
        masks = segment_masks(kind, result, segments)
        if "rle" in encodings:
            out["rle"] = rle_encode(masks)
        if "polygons" in encodings:
            out["polygons"] = polygons_of(masks)
    if "overlay" in encodings:
        if image is None:
            raise ValueError("the overlay encoding needs the frame image")
        out["overlay"] = jpeg_encode(  # the result's size: no legend strip beside it
            overlay(image, kind, result, num_classes, class_names=class_names, colors=colors, beside=False)
        )
    return out
