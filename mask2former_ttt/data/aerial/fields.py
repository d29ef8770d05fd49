"""Random fields for domain B's textures and layouts (own implementation, no reuse of domain A's noise).

* :func:`spectral_noise` -- periodic smooth noise made in the Fourier domain (Gaussian low-pass of white noise);
* :func:`fractal` -- a weighted sum of several :func:`spectral_noise` octaves;
* :func:`smoothstep` -- the cubic ``3u^2 - 2u^3`` on ``[0, 1]`` (used by the severity schedules too).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def spectral_noise(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """(H, W) float32 noise, zero mean and unit std, with features of about ``scale`` px; periodic in both axes.

    Gaussian low-pass of white noise in the Fourier domain; broad fields (``scale`` >= 12 px) are made on a grid
    coarser by a power of two (at most 8) and interpolated linearly (periodic), which keeps a 768 x 768 field cheap.
    """
    h, w = shape
    f = 1
    while f < 8 and scale / (2 * f) >= 6 and h % (2 * f) == 0 and w % (2 * f) == 0:
        f *= 2
    sh, sw = h // f, w // f
    white = rng.standard_normal((sh, sw))
    fy = np.fft.fftfreq(sh)[:, None]
    fx = np.fft.rfftfreq(sw)[None, :]
    gain = np.exp(-2.0 * (np.pi * scale / f) ** 2 * (fy**2 + fx**2))
    out = np.fft.irfft2(np.fft.rfft2(white) * gain, s=(sh, sw))
    if f > 1:
        out = _upsample(_upsample(out, f, 0), f, 1)
    out -= out.mean()
    std = out.std()
    return (out / std if std > 0 else out).astype(np.float32)


def _upsample(a: np.ndarray, f: int, axis: int) -> np.ndarray:
    """``a`` sampled ``f`` times more densely along ``axis``: periodic linear interpolation between cell centres."""
    m = a.shape[axis]
    pos = (np.arange(m * f) + 0.5) / f - 0.5
    lo = np.floor(pos).astype(np.int64)
    frac = (pos - lo).astype(a.dtype)
    shape = [1, 1]
    shape[axis] = -1
    frac = frac.reshape(shape)
    return np.take(a, lo % m, axis=axis) * (1 - frac) + np.take(a, (lo + 1) % m, axis=axis) * frac


def fractal(
    rng: np.random.Generator, shape: tuple[int, int], scales: Sequence[float], weights: Sequence[float]
) -> np.ndarray:
    """(H, W) float32: ``sum_k weights[k] * spectral_noise(scale=scales[k])``, renormalised to unit std."""
    acc = np.zeros(shape, np.float32)
    for s, wt in zip(scales, weights):
        acc += np.float32(wt) * spectral_noise(rng, shape, s)
    std = acc.std()
    return acc / std if std > 0 else acc


def smoothstep(u: np.ndarray | float) -> np.ndarray | float:
    """``3u^2 - 2u^3`` with ``u`` clipped to ``[0, 1]`` (0 -> 0, 1 -> 1, zero slope at both ends)."""
    v = np.clip(u, 0.0, 1.0)
    return v * v * (3.0 - 2.0 * v)
