"""Masks as COCO polygons: the outer contours of each mask, simplified, in COCO's `segmentation` list-of-lists form.

Contours are traced with scikit-image's marching squares (`find_contours` at level 0.5 on the zero-padded mask)
and simplified with Douglas-Peucker (`approximate_polygon`). Coordinates follow COCO: pixel (x, y) covers
[x, x + 1) × [y, y + 1), so a contour found between pixel centres is shifted by half a pixel;
`pycocotools.mask.frPyObjects` rasterises the polygons back to (nearly) the mask. Holes are not represented (a
polygon list has no way to say which ring is a hole): a mask with holes comes back filled.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mask2former_ttt.outputs.masks import as_numpy

POLYGON_TOLERANCE = 0.5  # pixels a simplified outline may stray from the traced contour

Polygon = list[float]  # [x1, y1, x2, y2, ...], at least 3 points


def _signed_area(xy: np.ndarray) -> float:
    """Shoelace area of a closed ring (K, 2) of (x, y) points, y pointing down: negative for outer contours as
    `find_contours(..., positive_orientation="high")` traces them, positive for holes."""
    x, y = xy[:, 0], xy[:, 1]
    return 0.5 * float(np.sum(x[:-1] * y[1:] - x[1:] * y[:-1]))


def mask_polygons(mask: Any, tolerance: float = POLYGON_TOLERANCE) -> list[Polygon]:
    """(H, W) bool mask -> its outer contours as COCO polygons `[[x1, y1, x2, y2, ...], ...]` (frame pixels; [] for
    an empty mask). `tolerance` (pixels) is the Douglas-Peucker simplification; a ring that simplification would
    reduce below 3 points is kept as traced."""
    from skimage.measure import approximate_polygon, find_contours  # imported on first use: only when asked for

    m = as_numpy(mask).astype(bool, copy=False)
    if m.ndim != 2:
        raise ValueError(f"expected an (H, W) mask, got shape {m.shape}")
    rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
    if rows.size == 0:
        return []
    top, left = int(rows[0]), int(cols[0])
    crop = np.pad(m[top : rows[-1] + 1, left : cols[-1] + 1], 1).astype(np.float32)
    offset = np.array([left - 1 + 0.5, top - 1 + 0.5])  # the crop's padding, then COCO's pixel-centre half pixel
    polygons: list[Polygon] = []
    for contour in find_contours(crop, 0.5, positive_orientation="high"):  # (K, 2) (row, col), closed
        ring = contour[:, ::-1]  # (x, y)
        if _signed_area(ring) >= 0:  # a hole
            continue
        simple = approximate_polygon(ring, tolerance)
        points = (simple if len(simple) >= 4 else ring)[:-1] + offset  # closed rings repeat their first point
        polygons.append([round(float(v), 2) for v in points.ravel()])
    return polygons


def polygons_of(masks: Any, tolerance: float = POLYGON_TOLERANCE) -> list[list[Polygon]]:
    """(N, H, W) bool masks -> N lists of COCO polygons (`mask_polygons` of each)."""
    return [mask_polygons(m, tolerance) for m in as_numpy(masks)]
