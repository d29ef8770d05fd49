"""Domain B's own image corruptions (same family names as domain A so the per-family tables line up).

:func:`corrupt` maps an (H, W, 3) uint8 frame, a family, a severity in ``[0, 1]``, a seed and the frame index
to the corrupted (H, W, 3) uint8 frame. Severity 0 (and family ``clean``) returns the input unchanged. Random
choices that fix a video's "direction" (tint hue, gamma sign, blur angle ...) come from ``(seed, family)``;
per-frame samples (noise) from ``(seed, family, t)``, so any frame can be regenerated on its own.

Families (strengths at severity 1, see :class:`CorruptionParams`):

* ``drift`` -- illumination / time of day and season, pixel-level on the whole frame: a gamma curve
  (``|log gamma|`` 0.25-0.6, darker or brighter), per-channel gains for colour temperature (warm or cold,
  12-25 %), and a YIQ hue rotation (40-90 deg, "vegetation season") with a saturation change (x0.6-1.4);
* ``noise`` -- Poisson-Gaussian sensor noise (shot noise with variance ``a x``, ``a = 0.02 sev^2``, plus read
  noise std ``0.05 sev``) and per-row banding (std ``0.035 sev``), all in [0, 1] units;
* ``fog`` -- haze without depth: ``I = J T + A (1 - T)``, uniform air-light ``A`` (a light grey-blue) and a
  spatially smooth transmission ``T = exp(-beta)``, ``beta = 1.2 sev (1 + 0.5 m)``, ``m`` a sum of slowly
  drifting sinusoids (the haze moves across the frame);
* ``contrast`` -- compression towards mid-grey with an inverse S-curve:
  ``0.5 + 0.5 k sign(d) |d|^e``, ``d = 2x - 1``, ``k = 1 - 0.65 sev``, ``e = 1 + 0.8 sev``;
* ``blur`` -- a motion-blur line kernel (length ``9 sev`` px at 128-px frames, random angle) or, for 40 % of the
  videos, a defocus disk (radius half that); never Gaussian;
* ``jpeg`` -- JPEG re-encoding with 4:2:0 chroma subsampling, quality 90 (severity 0+) down to 10 (severity 1),
  always with PIL so the bytes do not depend on whether OpenCV is installed;
* ``cast`` -- a colour cast: blend (weight ``0.6 sev``) with a luminance-preserving tint of a random hue.
"""

from __future__ import annotations

import colorsys
import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from ..seeding import rng_for

AERIAL_FAMILIES: tuple[str, ...] = ("clean", "drift", "noise", "fog", "contrast", "blur", "jpeg", "cast")
SHIFT_FAMILIES: tuple[str, ...] = AERIAL_FAMILIES[1:]

_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_INV = np.linalg.inv(_YIQ)
_LUMA = np.array([0.299, 0.587, 0.114])


@dataclass(frozen=True)
class CorruptionParams:
    """Strength of each family at severity 1 (intensities in [0, 1] units, lengths in px at 128-px frames)."""

    drift_log_gamma: tuple[float, float] = (0.25, 0.6)
    drift_temperature: tuple[float, float] = (0.12, 0.25)
    drift_hue_deg: tuple[float, float] = (40.0, 90.0)
    drift_saturation: tuple[float, float] = (0.6, 1.4)
    noise_shot: float = 0.02
    noise_read: float = 0.05
    noise_banding: float = 0.035
    fog_density: float = 1.2
    fog_variation: float = 0.5
    contrast_gain: float = 0.35
    contrast_curve: float = 0.8
    blur_length: float = 9.0
    blur_defocus_p: float = 0.4
    jpeg_quality: tuple[int, int] = (90, 10)
    cast_strength: float = 0.6


def corrupt(
    image: np.ndarray, family: str, severity: float, seed: int, t: int, params: CorruptionParams | None = None
) -> np.ndarray:
    """Corrupted copy of ``image`` (H, W, 3) uint8; the input itself when ``severity == 0`` or ``family == "clean"``."""
    if family not in AERIAL_FAMILIES:
        raise ValueError(f"unknown aerial family {family!r}; choose from {AERIAL_FAMILIES}")
    if severity == 0.0 or family == "clean":
        return image
    p = params or CorruptionParams()
    sev = float(severity)
    if family == "jpeg":
        q0, q1 = p.jpeg_quality
        return jpeg_roundtrip(image, int(round(q0 + sev * (q1 - q0))))
    video = rng_for(seed, "aerial", family, "video")
    x = image.astype(np.float64) / 255.0
    if family == "drift":
        x = _drift(x, sev, video, p)
    elif family == "noise":
        x = _noise(x, sev, rng_for(seed, "aerial", family, "frame", t), p)
    elif family == "fog":
        x = _haze(x, sev, video, t, p)
    elif family == "contrast":
        d = 2 * x - 1
        k, e = 1 - (1 - p.contrast_gain) * sev, 1 + p.contrast_curve * sev
        x = 0.5 + 0.5 * k * np.sign(d) * np.abs(d) ** e
    elif family == "blur":
        x = _blur(x, sev, video, p)
    elif family == "cast":
        hue = video.uniform(0, 1)
        tint = np.array(colorsys.hsv_to_rgb(hue, 1.0, 1.0))
        tint = tint / float(_LUMA @ tint)
        lum = x @ _LUMA
        s = p.cast_strength * sev
        x = x * (1 - s) + lum[..., None] * tint * s
    return np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _drift(x: np.ndarray, sev: float, rng: np.random.Generator, p: CorruptionParams) -> np.ndarray:
    log_gamma = rng.uniform(*p.drift_log_gamma) * rng.choice([-1.0, 1.0])
    temp = rng.uniform(*p.drift_temperature) * rng.choice([-1.0, 1.0])  # > 0 warm, < 0 cold
    hue = math.radians(rng.uniform(*p.drift_hue_deg)) * rng.choice([-1.0, 1.0])
    sat = rng.uniform(*p.drift_saturation)
    x = x ** math.exp(sev * log_gamma)
    x = x * (1 + sev * np.array([temp, 0.25 * temp, -temp]))
    c, s = math.cos(sev * hue), math.sin(sev * hue)
    k = 1 + sev * (sat - 1)
    rot = np.array([[1, 0, 0], [0, k * c, -k * s], [0, k * s, k * c]])
    return x @ (_YIQ_INV @ rot @ _YIQ).T


def _noise(x: np.ndarray, sev: float, rng: np.random.Generator, p: CorruptionParams) -> np.ndarray:
    a = p.noise_shot * sev * sev
    shot = rng.poisson(np.clip(x, 0, 1) / a) * a
    read = rng.standard_normal(x.shape) * (p.noise_read * sev)
    rows = rng.standard_normal((x.shape[0], 1, 1)) * (p.noise_banding * sev)
    return shot + read + rows


def _haze(x: np.ndarray, sev: float, rng: np.random.Generator, t: int, p: CorruptionParams) -> np.ndarray:
    h, w = x.shape[:2]
    air = np.array([0.84, 0.87, 0.9]) + rng.uniform(-0.04, 0.04, 3)
    y = np.arange(h, dtype=np.float64)[:, None]
    xx = np.arange(w, dtype=np.float64)[None, :]
    m = np.zeros((h, w))
    n_waves = 4
    for _ in range(n_waves):
        direction = rng.uniform(0, 2 * math.pi)
        wavelength = rng.uniform(0.6, 1.5) * h
        drift = rng.uniform(0.2, 0.6) * h / 128  # px per frame
        phase = rng.uniform(0, 2 * math.pi)
        proj = y * math.sin(direction) + xx * math.cos(direction)
        m += np.cos(2 * math.pi * (proj - drift * t) / wavelength + phase)
    m /= math.sqrt(n_waves / 2)
    beta = np.maximum(sev * p.fog_density * (1 + p.fog_variation * m), 0.0)
    trans = np.exp(-beta)[..., None]
    return x * trans + air * (1 - trans)


def line_kernel(length: float, angle: float) -> np.ndarray:
    """(k, k) float64 motion-blur kernel: a segment of ``length`` px at ``angle`` (rad), antialiased, sum 1."""
    half = max(length, 1e-6) / 2
    r = int(math.ceil(half)) + 1
    k = np.zeros((2 * r + 1, 2 * r + 1))
    n = max(2, int(math.ceil(4 * length)) + 1)
    s = np.linspace(-half, half, n)
    py, px = r + s * math.sin(angle), r + s * math.cos(angle)
    y0, x0 = np.floor(py).astype(int), np.floor(px).astype(int)
    fy, fx = py - y0, px - x0
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            np.add.at(k, (y0 + dy, x0 + dx), wy * wx)
    return k / k.sum()


def disk_kernel(radius: float, supersample: int = 8) -> np.ndarray:
    """(k, k) float64 defocus kernel: pixel coverage of a disk of ``radius`` px (delta for tiny radii), sum 1."""
    r = int(math.ceil(radius)) + 1
    sub = (np.arange(supersample) + 0.5) / supersample - 0.5
    grid = np.arange(-r, r + 1, dtype=np.float64)
    yy = (grid[:, None, None, None] + sub[None, None, :, None])
    xx = (grid[None, :, None, None] + sub[None, None, None, :])
    k = ((yy**2 + xx**2) <= radius**2).mean(axis=(2, 3))
    if k.sum() == 0:
        k[r, r] = 1.0
    return k / k.sum()


def _blur(x: np.ndarray, sev: float, rng: np.random.Generator, p: CorruptionParams) -> np.ndarray:
    scale = x.shape[0] / 128
    defocus = rng.random() < p.blur_defocus_p
    angle = rng.uniform(0, math.pi)
    k = disk_kernel(sev * p.blur_length * scale / 2) if defocus else line_kernel(sev * p.blur_length * scale, angle)
    return np.stack([ndimage.convolve(x[..., c], k, mode="reflect") for c in range(3)], axis=-1)


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    """(H, W, 3) uint8 after JPEG encoding at ``quality`` (1-95) with 4:2:0 chroma subsampling (PIL)."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=int(quality), subsampling=2)
    with Image.open(io.BytesIO(buf.getvalue())) as im:
        return np.asarray(im.convert("RGB")).copy()
