"""Deterministic colour palettes for label maps, instances and panoptic segments.

Which colour a class gets (`class_colors`): the dataset's own colours when the checkpoint has them (`meta.json`
`colors`, kept as `ModelConfig.class_colors` by `m2f-ttt train`), else the Cityscapes colour of a Cityscapes / street
class name, else the PASCAL VOC colour map at the class index. Things (instances, panoptic thing segments) are
drawn in a per-id shade of their class colour (`thing_shades`), so a legend of class colours is true for every
pixel and instances of one class stay apart.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from mask2former_ttt.data.classes import CITYSCAPES_COLORS, CITYSCAPES_NAMES

# class name (lower case, "_" and "-" read as spaces) -> Cityscapes colour; the synthetic street classes are a subset
NAMED_COLORS: dict[str, tuple[int, int, int]] = dict(zip(CITYSCAPES_NAMES, CITYSCAPES_COLORS))
SHADE_SPREAD = 0.5  # thing shades range over ±25 % lightness around the class colour


def _key(name: str) -> str:
    return " ".join(name.lower().replace("_", " ").replace("-", " ").split())


def class_colors(class_names: Sequence[str], colors: Sequence[Sequence[int]] | None = None) -> np.ndarray:
    """(K, 3) uint8 display colours for K classes: `colors` (the dataset's, e.g. `meta.json`) when given, else the
    Cityscapes colour of each Cityscapes-named class ("traffic_sign" = "traffic sign") and the VOC colour map at
    the index of the others."""
    n = len(class_names)
    if colors is not None:
        if len(colors) != n:
            raise ValueError(f"{len(colors)} class colours for {n} classes")
        return np.asarray(colors, dtype=np.int64).clip(0, 255).astype(np.uint8).reshape(n, 3)
    out = class_palette(n)
    for i, name in enumerate(class_names):
        if (rgb := NAMED_COLORS.get(_key(name))) is not None:
            out[i] = rgb
    return out


def thing_shades(base: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """base: (n, 3) uint8 class colours, ids: (n,) int segment / track ids -> (n, 3) uint8: each id's shade of its
    class colour, lighter or darker by a golden-ratio step of the id (the same id keeps its shade). The page draws
    the same shades (server/static/app.js `shade`)."""
    f = ((np.asarray(ids, dtype=np.int64) * 0.618033988749895) % 1.0 - 0.5) * SHADE_SPREAD  # (n,) in [-0.25, 0.25)
    c = base.astype(np.float64)
    lighter = c + (255.0 - c) * f[:, None]
    darker = c * (1.0 + f[:, None])
    return np.round(np.where(f[:, None] >= 0, lighter, darker)).clip(0, 255).astype(np.uint8)


def class_palette(n: int) -> np.ndarray:
    """(n, 3) uint8: the PASCAL VOC bit-interleaved colour map, extended to any n (vectorised over classes).

    Class 0 is not black so that it stays visible in overlays; colours are stable across runs.
    """
    ids = np.arange(1, n + 1, dtype=np.int64)
    out = np.zeros((n, 3), dtype=np.int64)
    c = ids.copy()
    for shift in range(7, -1, -1):
        for ch in range(3):
            out[:, ch] |= ((c >> ch) & 1) << shift
        c >>= 3
    return out.astype(np.uint8)


def instance_palette(n: int, seed: int = 0) -> np.ndarray:
    """(n, 3) uint8: well-separated bright colours for instances (golden-ratio hues), deterministic."""
    hues = (np.arange(n) * 0.618033988749895 + 0.1 * seed) % 1.0
    return hsv_to_rgb(hues, np.full(n, 0.75), np.full(n, 0.95))


def hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV (all in [0, 1]) -> (n, 3) uint8 RGB."""
    i = np.floor(h * 6).astype(np.int64) % 6
    f = h * 6 - np.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    table = np.stack(
        [np.stack(c, axis=-1) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))]
    )  # (6, n, 3)
    rgb = table[i, np.arange(len(h))]
    return np.clip(np.round(rgb * 255), 0, 255).astype(np.uint8)
