"""Overlays of segmentation results on RGB frames: palette lookup + alpha blend, vectorised over pixels.

Colours come from one table lookup (`lut[ids]`), the blend is one integer expression over the frame, and
segment borders are found by comparing each pixel with its right and lower neighbours. No Python loop runs
over masks or pixels.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from mask2former_ttt.outputs.masks import as_numpy, instance_id_map
from mask2former_ttt.outputs.palette import class_palette, instance_palette


def resize_rgb(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 -> (h, w, 3) uint8 for `size=(h, w)` (bilinear); returned unchanged if already that size."""
    if image.shape[:2] == tuple(size):
        return image
    return np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.BILINEAR))


def blend(image: np.ndarray, colors: np.ndarray, where: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """image, colors: (H, W, 3) uint8; where: (H, W) bool -> image with `colors` alpha-blended where `where`."""
    a = int(round(alpha * 256))
    mixed = ((image.astype(np.uint16) * (256 - a) + colors.astype(np.uint16) * a) >> 8).astype(np.uint8)
    return np.where(where[..., None], mixed, image)


def borders(ids: np.ndarray) -> np.ndarray:
    """(H, W) ids -> (H, W) bool, True where the right or lower neighbour has another id."""
    edge = np.zeros(ids.shape, dtype=bool)
    edge[:, :-1] |= ids[:, :-1] != ids[:, 1:]
    edge[:-1, :] |= ids[:-1, :] != ids[1:, :]
    return edge


def _ids_and_lut(kind: str, result: Any, num_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids (H, W) int64, lut (n, 3) uint8, painted (H, W) bool) for a post-processing result of `kind`."""
    if kind == "semantic":
        ids = as_numpy(result.label_map).astype(np.int64)
        return ids, class_palette(max(num_classes, int(ids.max(initial=0)) + 1)), np.ones(ids.shape, dtype=bool)
    if kind == "instance":
        ids = instance_id_map(result.masks, getattr(result, "ids", None))  # colour follows the (track) id
        lut = np.concatenate([np.zeros((1, 3), np.uint8), instance_palette(int(ids.max(initial=0)))])
        return ids, lut, ids > 0
    if kind == "panoptic":
        ids = as_numpy(result.id_map).astype(np.int64)
        infos = result.segments_info
        n = max([int(s["id"]) for s in infos], default=0) + 1
        lut = np.zeros((max(n, int(ids.max(initial=0)) + 1), 3), dtype=np.uint8)
        if infos:
            seg_ids = np.array([int(s["id"]) for s in infos])
            cats = np.array([int(s["category_id"]) for s in infos])
            things = np.array([bool(s.get("isthing", False)) for s in infos])
            thing_colors = instance_palette(int(seg_ids.max()))[seg_ids - 1]  # by id: a tracked thing keeps its colour
            lut[seg_ids] = np.where(
                things[:, None], thing_colors, class_palette(max(num_classes, cats.max() + 1))[cats]
            )
        return ids, lut, ids > 0
    raise ValueError(f"unknown result kind {kind!r}")


def overlay(image: np.ndarray, kind: str, result: Any, num_classes: int, alpha: float = 0.5) -> np.ndarray:
    """Draw a `semantic | instance | panoptic` result on `image` (H, W, 3) uint8 (resized to the result's size).

    Segments are filled with their colour at `alpha` and outlined at full opacity.
    """
    ids, lut, painted = _ids_and_lut(kind, result, num_classes)
    image = resize_rgb(np.ascontiguousarray(image), ids.shape)
    colors = lut[ids]
    out = blend(image, colors, painted, alpha)
    edge = borders(ids) & painted
    out[edge] = colors[edge]
    return out
