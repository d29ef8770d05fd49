"""Label encodings shared by the writers and readers.

* In memory, a panoptic labelling is a (H, W) int64 map of segment ids (0 = void) plus a dict
  ``segment id -> SegmentInfo``. Built from semantic + instance maps, the id is
  ``(class + 1) * 65536 + instance`` (``panoptic_from_semantic``), so stuff regions of a class share
  one id and each thing instance (track) has its own.
* COCO panoptic PNG: RGB with ``id = R + 256 * G + 256**2 * B``.
* KITTI-STEP panoptic map PNG: ``R = semantic class id``, ``G * 256 + B = instance id`` (0 = none,
  255 in R = void).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage

ID_DIVISOR = 65536


@dataclass(frozen=True)
class SegmentInfo:
    """One panoptic segment: its id in the panoptic map, contiguous class id, thing flag, crowd flag."""

    id: int
    category_id: int
    isthing: bool
    iscrowd: bool = False


# --- PNG io -----------------------------------------------------------------------------------------
def save_png(path: str | Path, array: np.ndarray, compress_level: int = 3) -> None:
    """Write a (H, W) uint8 (mode L) or (H, W, 3) uint8 (RGB) array as PNG, creating parent dirs."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.ascontiguousarray(array)
    if arr.dtype != np.uint8:
        raise TypeError(f"PNG arrays must be uint8, got {arr.dtype}")
    Image.fromarray(arr).save(path, format="PNG", compress_level=compress_level)


def load_rgb(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def load_raw(path: str | Path) -> np.ndarray:
    """A PNG's pixel array as stored (uint8 / uint16 / int32 for label images), no colour conversion."""
    with Image.open(path) as im:
        return np.asarray(im)  # mode P gives palette indices, I / I;16 give integer ids


# --- COCO panoptic -------------------------------------------------------------------------------
COCO_ID_LIMIT = 2**24  # id = R + 256 G + 256^2 B: three bytes


def rgb_to_id(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W) int64 with ``id = R + 256 G + 256^2 B`` (COCO panoptic); inverse of `id_to_rgb`."""
    c = np.asarray(rgb).astype(np.int64)
    return c[..., 0] + 256 * c[..., 1] + 65536 * c[..., 2]


def id_to_rgb(ids: Any) -> np.ndarray:
    """(H, W) segment ids (numpy array or torch tensor on any device) -> (H, W, 3) uint8, ``id = R + 256 G + 256^2 B``.

    The one COCO-panoptic id encoder (the data writers and the result encoders use it). Ids must lie in
    ``[0, 2^24)``: anything else cannot be written in three bytes and raises ValueError (no silent wrap-around).
    """
    if hasattr(ids, "detach"):
        ids = ids.detach().cpu().numpy()
    ids = np.asarray(ids).astype(np.int64, copy=False)
    if ids.size and (ids.min() < 0 or ids.max() >= COCO_ID_LIMIT):
        raise ValueError(
            f"COCO panoptic ids must be in [0, 2^24) = [0, {COCO_ID_LIMIT - 1}]; got ids in [{ids.min()}, {ids.max()}]"
        )
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536], axis=-1).astype(np.uint8)


# --- KITTI-STEP ----------------------------------------------------------------------------------------
def encode_kitti_step(semantic: np.ndarray, instance: np.ndarray) -> np.ndarray:
    """(H, W) semantic uint8 + (H, W) instance ids (< 65536) -> (H, W, 3) uint8 KITTI-STEP map."""
    inst = np.asarray(instance, np.int64)
    if inst.min(initial=0) < 0 or inst.max(initial=0) >= 65536:
        raise ValueError("KITTI-STEP instance ids must be in [0, 65536)")
    return np.stack([np.asarray(semantic, np.uint8), (inst // 256).astype(np.uint8), (inst % 256).astype(np.uint8)], -1)


def decode_kitti_step(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) uint8 -> semantic (H, W) uint8, instance (H, W) int32."""
    return rgb[..., 0].copy(), rgb[..., 1].astype(np.int32) * 256 + rgb[..., 2].astype(np.int32)


# --- semantic + instance <-> panoptic ------------------------------------------------------------------
def panoptic_from_semantic(
    semantic: np.ndarray, instance: np.ndarray | None, thing_ids: tuple[int, ...] | set[int], ignore_index: int = 255
) -> tuple[np.ndarray, dict[int, SegmentInfo]]:
    """Panoptic map + segments from semantic (H, W) and instance (H, W) maps.

    Stuff pixels get id ``(c + 1) * 65536``; thing pixels ``(c + 1) * 65536 + instance``; thing pixels
    with instance 0 form one *crowd* segment per class (KITTI-STEP / Cityscapes convention); pixels
    with ``ignore_index`` get id 0. With ``instance=None`` every class is one (stuff-like) segment.
    """
    sem = np.asarray(semantic).astype(np.int64)
    things = set(int(t) for t in thing_ids)
    if instance is None:
        inst = np.zeros_like(sem)
    else:
        inst = np.asarray(instance).astype(np.int64)
        is_thing = np.isin(sem, list(things)) if things else np.zeros(sem.shape, bool)
        inst = np.where(is_thing, inst, 0)
    pan = np.where(sem == ignore_index, 0, (sem + 1) * ID_DIVISOR + inst)
    segments: dict[int, SegmentInfo] = {}
    for sid in np.unique(pan):
        sid = int(sid)
        if sid == 0:
            continue
        c, i = sid // ID_DIVISOR - 1, sid % ID_DIVISOR
        thing = instance is not None and c in things
        segments[sid] = SegmentInfo(sid, c, thing, iscrowd=bool(thing and i == 0))
    return pan, segments


def segment_stats(pan: np.ndarray) -> dict[int, tuple[int, list[int]]]:
    """``segment id -> (area, [x, y, w, h])`` for every non-zero id of a (H, W) panoptic map."""
    ids, inv, counts = np.unique(pan, return_inverse=True, return_counts=True)
    inv = inv.reshape(pan.shape)
    boxes = ndimage.find_objects(inv + 1)
    out: dict[int, tuple[int, list[int]]] = {}
    for k, (sid, n) in enumerate(zip(ids.tolist(), counts.tolist())):
        if sid == 0:
            continue
        ys, xs = boxes[k]
        out[sid] = (int(n), [int(xs.start), int(ys.start), int(xs.stop - xs.start), int(ys.stop - ys.start)])
    return out
