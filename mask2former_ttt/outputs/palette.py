"""Deterministic colour palettes for label maps, instances and panoptic segments."""

from __future__ import annotations

import numpy as np


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
