"""Camera motion: smooth video paths along the street and random poses for training stills.

A video path moves the camera to the right at ``speed`` output pixels per frame (default 2-4,
modulated by a slow sinusoid), with a slow sinusoidal zoom (+-12 % of the view height) and a slow
vertical pan, so consecutive frames overlap by ~97 % while frames 50 apart barely overlap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .world import CameraPose


@dataclass(frozen=True)
class PathSpec:
    """Ranges (uniformly sampled per video) of the camera motion parameters."""

    speed: tuple[float, float] = (2.0, 4.0)  # output px / frame (near layer)
    speed_wobble: float = 0.3  # relative amplitude of the speed modulation
    view: tuple[float, float] = (0.62, 0.8)  # view height / world height
    zoom_wobble: float = 0.12  # relative amplitude of the zoom modulation
    pan_wobble: float = 0.04  # vertical pan amplitude / world height
    period: tuple[float, float] = (80.0, 260.0)  # frames, for all modulations


def _max_view_h(world_height: int, spec: PathSpec) -> float:
    return min(world_height, spec.view[1] * world_height * (1 + spec.zoom_wobble))


def video_path(
    n_frames: int, size: tuple[int, int], world_height: int, rng: np.random.Generator, spec: PathSpec = PathSpec()
) -> list[CameraPose]:
    """A smooth path of ``n_frames`` poses starting at the world's left edge.

    Use :func:`required_width` on the result to size the world. Deterministic given ``rng``.
    """
    h, w = size
    t = np.arange(n_frames, dtype=np.float64)

    def wobble() -> np.ndarray:
        return np.sin(2 * np.pi * t / rng.uniform(*spec.period) + rng.uniform(0, 2 * np.pi))

    view0 = rng.uniform(*spec.view) * world_height
    view_h = np.minimum(view0 * (1 + spec.zoom_wobble * wobble()), world_height)
    speed = rng.uniform(*spec.speed) * (1 + spec.speed_wobble * wobble())  # output px / frame
    step = speed * view_h / h  # world px / frame
    vmax = _max_view_h(world_height, spec)
    x0 = vmax * w / h / 2 + 4
    x = x0 + np.concatenate([[0.0], np.cumsum(step[:-1])])
    # Keep the road near the bottom of the frame; pan gently.
    y = world_height - view_h / 2 - rng.uniform(0, 0.08) * world_height + spec.pan_wobble * world_height * wobble()
    y = np.clip(y, view_h / 2, world_height - view_h / 2)
    return [CameraPose(float(a), float(b), float(c)) for a, b, c in zip(x, y, view_h)]


def required_width(path: list[CameraPose], size: tuple[int, int]) -> int:
    """World columns needed so that ``path`` never leaves the world (all layers, any parallax)."""
    h, w = size
    return int(np.ceil(max(p.x + p.view_h * w / h / 2 for p in path) + 4))


def random_pose(
    world_width: int, world_height: int, size: tuple[int, int], rng: np.random.Generator,
    view: tuple[float, float] = (0.5, 0.9),
) -> CameraPose:
    """A random pose for a training still: uniform position, zoom ``view`` x world height."""
    h, w = size
    view_h = rng.uniform(*view) * world_height
    half_w = view_h * w / h / 2
    x = rng.uniform(half_w, max(world_width - half_w, half_w + 1))
    y = world_height - view_h / 2 - rng.uniform(0, 0.1) * world_height
    y = float(np.clip(y, view_h / 2, world_height - view_h / 2))
    return CameraPose(float(x), y, float(view_h))
