"""Procedural noise fields (numpy, float32, zero mean / unit std)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def smooth_noise(
    rng: np.random.Generator, shape: tuple[int, ...], sigma: float | tuple[float, ...]
) -> np.ndarray:
    """Gaussian-smoothed white noise of ``shape`` with per-axis correlation length ``sigma`` (px).

    Large sigmas are synthesised at a reduced resolution and upsampled (bilinear), which keeps a
    (256, 4096) field at a few milliseconds. Returns float32 with zero mean and unit std.
    """
    sig = np.broadcast_to(np.asarray(sigma, dtype=np.float64), (len(shape),))
    down = np.maximum(1, np.floor(sig / 2.0)).astype(int)
    low_shape = tuple(int(np.ceil(n / d)) + 4 for n, d in zip(shape, down))
    low = rng.standard_normal(low_shape, dtype=np.float32)
    low = ndimage.gaussian_filter(low, sigma=tuple(s / d for s, d in zip(sig, down)), mode="wrap")
    if np.any(down > 1):
        low = ndimage.zoom(low, tuple(float(d) for d in down), order=1, prefilter=False, grid_mode=False)
    out = low[tuple(slice(2 * int(d), 2 * int(d) + n) for n, d in zip(shape, down))]
    out = out - out.mean()
    std = float(out.std())
    return (out / std if std > 0 else out).astype(np.float32, copy=False)


def smooth_noise_1d(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    """1-D smooth noise of length ``n`` (float32, unit std); used for wobbly edges (roof lines, hedges)."""
    return smooth_noise(rng, (1, n), (1e-3, sigma))[0]
