"""Severity schedules of domain B's videos: which corruption, how strong, at every frame.

* A single-family video (``clean`` or a shift family) ramps with a smoothstep: ``severity(t) = max_severity *
  smoothstep(t / R)``, ``R = max(1, round(ramp_end * n_frames))`` (default ``ramp_end = 0.35``): frame 0 is
  exactly clean, full severity from 35 % of the video on, then held. ``frame_family`` is the family throughout.
* A ``return`` video: clean for the first 15 %, then an excursion of ``excursion`` (default drift + fog, applied
  together at the same severity) ramping up (smoothstep) to ``max_severity`` at 45 %, held to 55 %, back down to 0
  at 75 %, and clean for the final 25 %. ``frame_family`` is ``"clean"`` where the severity is 0 and the
  excursion's first family (``"drift"``) elsewhere, so evaluation's final-clean (forgetting) range is found.

:meth:`AerialProgram.to_json` writes the same keys as domain A's programs (``family``, ``segments``,
``shift_seed``, ``max_severity``, ``severity``, ``frame_family``) plus ``ramp_end`` / ``excursion``; the
``segments`` profiles (``smoothstep`` / ``excursion``) are domain B's own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .corruptions import AERIAL_FAMILIES, SHIFT_FAMILIES, CorruptionParams, corrupt
from .fields import smoothstep

RETURN = "return"
RETURN_SHIFT: tuple[str, ...] = ("drift", "fog")
PROGRAM_FAMILIES: tuple[str, ...] = (*AERIAL_FAMILIES, RETURN)


@dataclass(frozen=True)
class AerialProgram:
    """The corruption of every frame of one video: ``family`` in :data:`PROGRAM_FAMILIES`."""

    family: str
    n_frames: int
    seed: int
    ramp_end: float = 0.35
    max_severity: float = 1.0
    excursion: tuple[str, ...] = RETURN_SHIFT
    params: CorruptionParams = field(default_factory=CorruptionParams)

    def __post_init__(self) -> None:
        if self.family not in PROGRAM_FAMILIES:
            raise ValueError(f"unknown aerial family {self.family!r}; choose from {PROGRAM_FAMILIES}")
        if self.n_frames < 1:
            raise ValueError("a video needs at least one frame")
        if not self.excursion or set(self.excursion) - set(SHIFT_FAMILIES):
            raise ValueError(f"excursion families must be among {SHIFT_FAMILIES}")
        if self.family == RETURN:
            self.return_bounds()  # validates the length

    # --- schedule -------------------------------------------------------------------------------------
    def return_bounds(self) -> tuple[int, int, int, int]:
        """Frames ``(a, b, c, d)`` of a return video: clean before ``a``, peak at ``b``..``c``, clean from ``d``."""
        n = self.n_frames
        a = max(1, round(0.15 * n))
        b = max(a + 1, round(0.45 * n))
        c = max(b, round(0.55 * n))
        d = max(c + 1, round(0.75 * n))
        if d >= n:
            raise ValueError(f"a return video needs at least 4 frames (got {n})")
        return a, b, c, d

    def severity_at(self, t: int) -> float:
        """Severity in ``[0, max_severity]`` of frame ``t``."""
        if not 0 <= t < self.n_frames:
            raise IndexError(f"frame {t} outside [0, {self.n_frames})")
        if self.family == "clean":
            return 0.0
        if self.family == RETURN:
            a, b, c, d = self.return_bounds()
            if t < a or t >= d:
                return 0.0
            u = (t - a) / (b - a) if t < b else (1.0 if t <= c else (d - t) / (d - c))
        else:
            u = t / max(1, round(self.ramp_end * self.n_frames))
        return float(self.max_severity * smoothstep(float(u)))

    def family_at(self, t: int) -> str:
        """The frame's family (``"clean"`` on a return video's severity-0 frames)."""
        if self.family != RETURN:
            return self.family
        return "clean" if self.severity_at(t) == 0.0 else self.excursion[0]

    def shifts_at(self, t: int) -> tuple[str, ...]:
        """Corruption families applied to frame ``t``, in order."""
        if self.family == RETURN:
            return self.excursion if self.severity_at(t) > 0 else ()
        return () if self.family == "clean" else (self.family,)

    def apply(self, image: np.ndarray, t: int) -> np.ndarray:
        """(H, W, 3) uint8 frame ``t`` after its corruptions (the input itself at severity 0)."""
        sev = self.severity_at(t)
        for fam in self.shifts_at(t):
            image = corrupt(image, fam, sev, self.seed, t, self.params)
        return image

    # --- serialisation ----------------------------------------------------------------------------------
    def segments(self) -> list[dict]:
        n = self.n_frames
        if self.family != RETURN:
            return [{"family": self.family, "start": 0, "stop": n, "profile": "smoothstep"}]
        a, _, _, d = self.return_bounds()
        return [{"family": "clean", "start": 0, "stop": a, "profile": "smoothstep"},
                {"family": "+".join(self.excursion), "start": a, "stop": d, "profile": "excursion"},
                {"family": "clean", "start": d, "stop": n, "profile": "smoothstep"}]

    def to_json(self) -> dict:
        """Manifest fields, including the per-frame ``severity`` and ``frame_family`` lists."""
        out = {
            "family": self.family,
            "segments": self.segments(),
            "shift_seed": self.seed,
            "ramp_end": self.ramp_end,
            "max_severity": self.max_severity,
            "severity": [round(self.severity_at(t), 6) for t in range(self.n_frames)],
            "frame_family": [self.family_at(t) for t in range(self.n_frames)],
        }
        if self.family == RETURN:
            out["excursion"] = list(self.excursion)
        return out

    @classmethod
    def from_json(cls, d: dict, n_frames: int, params: CorruptionParams | None = None) -> "AerialProgram":
        return cls(
            family=d["family"], n_frames=int(n_frames), seed=int(d["shift_seed"]), ramp_end=float(d["ramp_end"]),
            max_severity=float(d["max_severity"]), excursion=tuple(d.get("excursion", RETURN_SHIFT)),
            params=params or CorruptionParams(),
        )
