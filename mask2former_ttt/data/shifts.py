"""Distribution shifts applied to test videos, with a severity that ramps up over time.

Families (``FAMILIES``):

* ``clean``: control, no change;
* ``drift``: appearance drift inside the renderer: per-class hue rotation (35-100 deg), saturation
  (x0.4-1.6) and brightness (x0.65-1.35), a global illumination tint (warm / cold / dusk / green),
  texture strength (x0.3-2.5) and a swap towards a different class texture (stripes, blotches);
* ``noise``: additive i.i.d. Gaussian noise, std ``severity * 40`` (0-255 units);
* ``fog``: depth-dependent fog, ``f = 1 - exp(-severity * 2.5 * depth * m)`` blended towards a grey-white,
  ``m`` a slowly moving +-25 % density modulation (sky and far buildings fade first);
* ``contrast``: contrast reduced to ``1 - 0.75 * severity`` around the frame mean;
* ``blur``: Gaussian blur, sigma ``severity * 2.5 px`` (scaled by frame height / 128);
* ``jpeg``: JPEG re-encoding, quality from 95 (severity 0+) down to 8 (severity 1).

Multi-segment programs: ``segments`` (four shift families in turn), ``return`` (clean, an *excursion* of drift
to severity 1 around mid-video and back, clean for the final 25 %: SHIFT's continuous protocol, scored for
forgetting on the final clean segment) and ``cycle`` (a long stream alternating clean and shifted stretches).

Severity schedule (:meth:`ShiftProgram.severity_at`): within a segment of ``L`` frames starting at
``start``, ``severity(t) = max_severity * min(1, (t - start) / R)`` with ``R = max(1, round(ramp_frac * L))``
(default ``ramp_frac = 0.4``): the first frame of a segment is exactly clean (severity 0 is the
identity for every family), severity reaches its maximum after 40 % of the segment and is then held.
A single-family video is one segment spanning the video. A ``segments`` video chains segments of
different families (default: 4 distinct shift families in a seeded order, equal lengths); each
segment ramps from 0 again, so the family switch at a boundary is abrupt.

All randomness (drift directions, noise samples, fog colour) derives from the program's ``seed`` and
the frame index, so any frame can be regenerated independently and reproducibly.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field

import numpy as np
from PIL import Image
from scipy import ndimage

from .appearance import Appearance, hue_rotation, saturation
from .seeding import rng_for
from .world import Frame

FAMILIES: tuple[str, ...] = ("clean", "drift", "noise", "fog", "contrast", "blur", "jpeg")
SHIFT_FAMILIES: tuple[str, ...] = FAMILIES[1:]
SEGMENTS = "segments"
RETURN = "return"  # clean, then a drift away to a shifted domain and back, then clean (SHIFT's continuous protocol)
CYCLE = "cycle"  # a long stream alternating clean stretches and shifts (every shift family in turn)
_TINTS = ((1.12, 0.92, 0.68), (0.74, 0.9, 1.16), (0.55, 0.55, 0.62), (0.86, 1.06, 0.78))


@dataclass(frozen=True)
class ShiftParams:
    """Corruption strength at severity 1 for each family."""

    noise_std: float = 40.0
    fog_density: float = 2.5
    contrast_min: float = 0.25
    blur_sigma: float = 2.5  # px at a 128-px frame height
    jpeg_quality: tuple[int, int] = (95, 8)
    drift_hue_deg: tuple[float, float] = (35.0, 100.0)
    drift_saturation: tuple[float, float] = (0.4, 1.6)
    drift_brightness: tuple[float, float] = (0.65, 1.35)
    drift_tex_gain: tuple[float, float] = (0.3, 2.5)
    drift_tex2_mix: tuple[float, float] = (0.4, 1.0)


@dataclass(frozen=True)
class Segment:
    """Frames ``[start, stop)`` of a video are shifted by ``family``; ``profile`` is the severity's shape over
    the segment: ``ramp`` (0 -> max over the first ``ramp_frac``, then held) or ``excursion`` (0 -> max over the
    first 45 %, held to 55 %, back to 0 at the end: a drift away and back)."""

    family: str
    start: int
    stop: int
    profile: str = "ramp"


@dataclass(frozen=True)
class ShiftProgram:
    """The shift applied to every frame of one video (a sequence of family segments)."""

    segments: tuple[Segment, ...]
    seed: int
    ramp_frac: float = 0.4
    max_severity: float = 1.0
    num_classes: int = 11
    params: ShiftParams = field(default_factory=ShiftParams)

    def __post_init__(self) -> None:
        prev = 0
        for s in self.segments:
            if s.family not in FAMILIES:
                raise ValueError(f"unknown shift family {s.family!r}; choose from {FAMILIES}")
            if s.profile not in ("ramp", "excursion"):
                raise ValueError(f"unknown severity profile {s.profile!r}; choose ramp or excursion")
            if s.start != prev or s.stop <= s.start:
                raise ValueError("segments must be contiguous, non-empty and start at frame 0")
            prev = s.stop

    # --- schedule -------------------------------------------------------------------------------
    @property
    def n_frames(self) -> int:
        return self.segments[-1].stop

    @property
    def family(self) -> str:
        """The video's family: the segment family, ``"return"`` for clean -> excursion -> clean, ``"cycle"`` for a
        long cycle of shifts and clean stretches, or ``"segments"`` for other multi-segment programs."""
        if len(self.segments) == 1:
            return self.segments[0].family
        if len(self.segments) == 3 and self.segments[1].profile == "excursion":
            return RETURN
        return CYCLE if self.segments[0].family == "clean" and len(self.segments) > 4 else SEGMENTS

    def segment_at(self, t: int) -> tuple[int, Segment]:
        for i, s in enumerate(self.segments):
            if s.start <= t < s.stop:
                return i, s
        raise IndexError(f"frame {t} outside [0, {self.n_frames})")

    def family_at(self, t: int) -> str:
        """The frame's family; an excursion's frames at severity 0 (its first and last) are ``clean``."""
        s = self.segment_at(t)[1]
        return "clean" if s.profile == "excursion" and self.severity_at(t) == 0.0 else s.family

    def severity_at(self, t: int) -> float:
        """Severity in ``[0, max_severity]`` of frame ``t`` (0 for ``clean``)."""
        _, s = self.segment_at(t)
        if s.family == "clean":
            return 0.0
        if s.profile == "excursion":
            u = (t - s.start) / (s.stop - s.start)  # in [0, 1)
            return float(self.max_severity * max(0.0, min(1.0, u / 0.45, (1.0 - u) / 0.45)))
        ramp = max(1, round(self.ramp_frac * (s.stop - s.start)))
        return float(self.max_severity * min(1.0, (t - s.start) / ramp))

    # --- application ------------------------------------------------------------------------------
    def appearance_at(self, t: int) -> Appearance | None:
        """Renderer appearance for frame ``t`` (only ``drift`` changes it; None = clean rendering)."""
        i, s = self.segment_at(t)
        sev = self.severity_at(t)
        if s.family != "drift" or sev == 0.0:
            return None
        return drift_appearance(sev, rng_for(self.seed, "drift", i), self.num_classes, self.params)

    def apply(self, frame: Frame, t: int) -> np.ndarray:
        """Image-space corruption of a rendered frame; returns the (H, W, 3) uint8 image."""
        i, s = self.segment_at(t)
        sev = self.severity_at(t)
        if sev == 0.0 or s.family in ("clean", "drift"):
            return frame.image
        p = self.params
        img = frame.image.astype(np.float32)
        h = img.shape[0]
        if s.family == "noise":
            rng = rng_for(self.seed, "noise", i, t)
            img = img + rng.standard_normal(img.shape, dtype=np.float32) * (sev * p.noise_std)
        elif s.family == "fog":
            rng = rng_for(self.seed, "fog", i)
            color = np.float32([205, 208, 212]) + rng.uniform(-10, 10, 3).astype(np.float32)
            ph, period, kx = rng.uniform(0, 2 * np.pi), rng.uniform(60, 120), rng.uniform(1, 2.5)
            w = img.shape[1]
            x = np.arange(w, dtype=np.float32)[None, :] / w
            y = np.arange(h, dtype=np.float32)[:, None] / h
            m = 1 + 0.25 * np.sin(2 * np.pi * (kx * x + t / period) + ph) * np.cos(np.pi * y + ph)
            f = 1 - np.exp(-sev * p.fog_density * frame.depth * m)
            img = img * (1 - f[..., None]) + color * f[..., None]
        elif s.family == "contrast":
            mean = img.mean()
            img = mean + (img - mean) * (1 - sev * (1 - p.contrast_min))
        elif s.family == "blur":
            sigma = sev * p.blur_sigma * h / 128
            img = ndimage.gaussian_filter(img, sigma=(sigma, sigma, 0), mode="nearest", truncate=3.0)
        elif s.family == "jpeg":
            q0, q1 = p.jpeg_quality
            quality = int(round(q0 + sev * (q1 - q0)))
            buf = io.BytesIO()
            Image.fromarray(frame.image).save(buf, format="JPEG", quality=quality)
            return np.array(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
        return np.clip(img + 0.5, 0, 255).astype(np.uint8)

    # --- serialisation ----------------------------------------------------------------------------
    def to_json(self) -> dict:
        """JSON manifest entry, including the per-frame ``severity`` and ``frame_family`` lists."""
        return {
            "family": self.family,
            "segments": [asdict(s) for s in self.segments],
            "shift_seed": self.seed,
            "ramp_frac": self.ramp_frac,
            "max_severity": self.max_severity,
            "severity": [round(self.severity_at(t), 6) for t in range(self.n_frames)],
            "frame_family": [self.family_at(t) for t in range(self.n_frames)],
        }

    @classmethod
    def from_json(cls, d: dict, num_classes: int = 11, params: ShiftParams | None = None) -> "ShiftProgram":
        return cls(
            segments=tuple(Segment(**s) for s in d["segments"]),
            seed=int(d["shift_seed"]),
            ramp_frac=float(d["ramp_frac"]),
            max_severity=float(d["max_severity"]),
            num_classes=num_classes,
            params=params or ShiftParams(),
        )


def shift_params_from_json(d: dict | None) -> ShiftParams:
    """``ShiftParams`` from its ``asdict`` form (``meta.json["generator"]["shift_params"]``)."""
    if not d:
        return ShiftParams()
    return ShiftParams(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def drift_appearance(sev: float, rng: np.random.Generator, num_classes: int, p: ShiftParams) -> Appearance:
    """Appearance at drift severity ``sev``; ``rng`` fixes the drift direction (same for all frames)."""
    k = num_classes
    sign = rng.choice([-1.0, 1.0], k)
    hue = np.deg2rad(rng.uniform(*p.drift_hue_deg, k)) * sign
    sat = rng.uniform(*p.drift_saturation, k)
    bright = rng.uniform(*p.drift_brightness, k)
    tex_gain = np.exp(rng.uniform(np.log(p.drift_tex_gain[0]), np.log(p.drift_tex_gain[1]), k))
    mix = rng.uniform(*p.drift_tex2_mix, k)
    tint = np.asarray(_TINTS[int(rng.integers(len(_TINTS)))], np.float32)
    bias = rng.uniform(-15, 15, 3)
    mats = np.stack(
        [bright[c] ** sev * hue_rotation(sev * hue[c]) @ saturation(1 + sev * (sat[c] - 1)) for c in range(k)]
    )
    return Appearance(
        color_matrix=mats.astype(np.float32),
        color_bias=np.zeros((k, 3), np.float32),
        tex_gain=(1 + sev * (tex_gain - 1)).astype(np.float32),
        tex2_mix=(sev * mix).astype(np.float32),
        gain=(1 + sev * (tint - 1)).astype(np.float32),
        bias=(sev * bias).astype(np.float32),
    )


def single_family(family: str, n_frames: int, seed: int, **kw: object) -> ShiftProgram:
    """A program with one segment of ``family`` over ``n_frames`` frames."""
    return ShiftProgram(segments=(Segment(family, 0, n_frames),), seed=seed, **kw)  # type: ignore[arg-type]


def segments_program(
    n_frames: int, seed: int, families: tuple[str, ...] | None = None, n_segments: int = 4, **kw: object
) -> ShiftProgram:
    """Consecutive equal-length segments; ``families`` default: ``n_segments`` distinct shift families
    in a seeded random order."""
    if families is None:
        rng = rng_for(seed, "segments-order")
        families = tuple(str(f) for f in rng.permutation(np.array(SHIFT_FAMILIES))[:n_segments])
    n = len(families)
    if n_frames < n:
        raise ValueError("need at least one frame per segment")
    bounds = [round(i * n_frames / n) for i in range(n + 1)]
    segs = tuple(Segment(f, bounds[i], bounds[i + 1]) for i, f in enumerate(families))
    return ShiftProgram(segments=segs, seed=seed, **kw)  # type: ignore[arg-type]


def return_program(n_frames: int, seed: int, shift: str = "drift", **kw: object) -> ShiftProgram:
    """Clean for the first 20 % of the frames, an excursion of ``shift`` over 20-75 % (severity at its maximum
    around mid-video, back to 0 at 75 %), clean for the final 25 %: forgetting is scored on that final segment."""
    if n_frames < 3:
        raise ValueError("a return video needs at least 3 frames")
    a = max(1, round(0.2 * n_frames))
    b = max(a + 1, min(n_frames - 1, round(0.75 * n_frames)))
    segs = (Segment("clean", 0, a), Segment(shift, a, b, "excursion"), Segment("clean", b, n_frames))
    return ShiftProgram(segments=segs, seed=seed, **kw)  # type: ignore[arg-type]


def cycle_program(n_frames: int, seed: int, period: int = 250, **kw: object) -> ShiftProgram:
    """A long stream: clean and shifted stretches of ``period`` frames alternate, the shifts taking every shift
    family in turn (each ramps up over ``ramp_frac`` of its stretch and ends abruptly)."""
    n = max(2, n_frames // period)
    families = tuple("clean" if i % 2 == 0 else SHIFT_FAMILIES[(i // 2) % len(SHIFT_FAMILIES)] for i in range(n))
    bounds = [round(i * n_frames / n) for i in range(n + 1)]
    segs = tuple(Segment(f, bounds[i], bounds[i + 1]) for i, f in enumerate(families))
    return ShiftProgram(segments=segs, seed=seed, **kw)  # type: ignore[arg-type]


def make_program(family: str, n_frames: int, seed: int, **kw: object) -> ShiftProgram:
    """``family`` in ``FAMILIES``, ``"segments"``, ``"return"`` or ``"cycle"``."""
    if family == SEGMENTS:
        return segments_program(n_frames, seed, **kw)
    if family == RETURN:
        return return_program(n_frames, seed, **kw)
    if family == CYCLE:
        return cycle_program(n_frames, seed, **kw)
    return single_family(family, n_frames, seed, **kw)
