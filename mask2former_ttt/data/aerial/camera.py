"""Drone camera for domain B: a pose is a point above the map, an in-plane rotation and an altitude (scale).

A frame of ``size = (H, W)`` samples the map on a rotated, scaled grid centred on the pose: frame pixel
``(i, j)`` (centred offsets ``(y', x')``) shows the map at ``c + scale * R(angle) (y', x')``. The image is sampled
bilinearly, the labels (semantic, instance) by nearest neighbour at the same coordinates.

* :func:`drone_path` -- a video's smooth flight: speed along a slowly turning heading, a steady yaw rotation
  of the camera (with a gentle wobble), and a slow altitude oscillation; the whole path is fitted inside the map;
* :func:`random_still_pose` -- random position (optionally near an anchor pixel), rotation 0-360 deg, scale jitter;
* :func:`render` -- a :class:`AerialFrame` from a map and a pose.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .terrain import AerialMap


@dataclass(frozen=True)
class DronePose:
    """Frame centre ``(cy, cx)`` in map px, in-plane rotation ``angle`` (rad), ``scale`` = map px per frame px
    (higher altitude = larger scale)."""

    cy: float
    cx: float
    angle: float
    scale: float


@dataclass
class AerialFrame:
    """One rendered frame: ``image`` (H, W, 3) uint8, ``semantic`` (H, W) uint8, ``instance`` (H, W) int32."""

    image: np.ndarray
    semantic: np.ndarray
    instance: np.ndarray


@dataclass(frozen=True)
class FlightParams:
    """Ranges the flight of a video is drawn from (speeds in map px per frame at ``g = 1``)."""

    speed: tuple[float, float] = (0.7, 1.6)
    turn_rate_deg: float = 0.5  # peak heading change per frame
    yaw_rate_deg: tuple[float, float] = (0.15, 0.6)  # steady camera rotation per frame
    yaw_wobble_deg: float = 8.0
    scale0: tuple[float, float] = (0.95, 1.25)
    altitude_amp: tuple[float, float] = (0.08, 0.22)  # log-scale amplitude of the altitude oscillation
    altitude_period: tuple[float, float] = (90.0, 260.0)  # frames


STILL_SCALE = (0.8, 1.5)


def footprint_radius(size: tuple[int, int], scale: float) -> float:
    """Map px from a frame's centre to its farthest corner, at any rotation."""
    return 0.5 * math.hypot(size[0], size[1]) * scale + 1.0


def sample_coords(pose: DronePose, size: tuple[int, int]) -> np.ndarray:
    """(2, H, W) float64 map coordinates (row, col) that frame ``size`` samples at ``pose``."""
    h, w = size
    y = np.arange(h, dtype=np.float64)[:, None] - (h - 1) / 2
    x = np.arange(w, dtype=np.float64)[None, :] - (w - 1) / 2
    c, s = math.cos(pose.angle), math.sin(pose.angle)
    rows = pose.cy + pose.scale * (c * y + s * x)
    cols = pose.cx + pose.scale * (-s * y + c * x)
    return np.stack([rows, cols])


def render(world: AerialMap, pose: DronePose, size: tuple[int, int]) -> AerialFrame:
    """Frame of ``size = (H, W)`` at ``pose``: bilinear image, nearest-neighbour labels."""
    coords = sample_coords(pose, size)
    src = world.float_image()
    image = np.stack(
        [ndimage.map_coordinates(src[..., ch], coords, order=1, mode="nearest") for ch in range(3)], axis=-1
    )
    semantic = ndimage.map_coordinates(world.semantic, coords, order=0, mode="nearest")
    instance = ndimage.map_coordinates(world.instance, coords, order=0, mode="nearest")
    return AerialFrame(
        np.clip(image + 0.5, 0, 255).astype(np.uint8), semantic.astype(np.uint8), instance.astype(np.int32)
    )


def random_still_pose(
    rng: np.random.Generator, map_shape: tuple[int, int], size: tuple[int, int],
    anchor: tuple[float, float] | None = None,
) -> DronePose:
    """A training pose: rotation uniform in [0, 2 pi), scale log-uniform in ``STILL_SCALE``, centre uniform over
    the map (or within a third of the frame from ``anchor``), always with the whole footprint on the map."""
    scale = float(math.exp(rng.uniform(math.log(STILL_SCALE[0]), math.log(STILL_SCALE[1]))))
    angle = float(rng.uniform(0, 2 * math.pi))
    m = footprint_radius(size, scale)
    h, w = map_shape
    if m >= min(h, w) / 2:
        raise ValueError(f"map {map_shape} too small for {size} frames at scale {scale:.2f}")
    if anchor is None:
        cy, cx = rng.uniform(m, h - m), rng.uniform(m, w - m)
    else:
        cy = anchor[0] + rng.uniform(-1, 1) * size[0] * scale / 3
        cx = anchor[1] + rng.uniform(-1, 1) * size[1] * scale / 3
    return DronePose(float(np.clip(cy, m, h - m)), float(np.clip(cx, m, w - m)), angle, scale)


def drone_path(
    rng: np.random.Generator, n_frames: int, map_shape: tuple[int, int], size: tuple[int, int],
    params: FlightParams | None = None,
) -> list[DronePose]:
    """``n_frames`` poses of one smooth flight, fitted inside ``map_shape`` (translation shrunk if it would not fit).

    Heading: ``h(t) = h0 + sum_{<t} omega``, ``omega`` a sum of two slow sinusoids (at most ``turn_rate_deg``);
    camera angle: ``a0 +/- yaw_rate * t + wobble * sin(...)``; scale: ``s0 * exp(A sin(2 pi t / P + phi))``.
    """
    p = params or FlightParams()
    g = size[0] / 128.0
    t = np.arange(n_frames, dtype=np.float64)
    speed = rng.uniform(*p.speed) * g
    turn = math.radians(p.turn_rate_deg) * rng.uniform(0.3, 1.0)
    w1, w2 = rng.uniform(0.3, 0.7), rng.uniform(0.2, 0.5)
    p1, p2 = rng.uniform(80, 240), rng.uniform(40, 120)
    ph = rng.uniform(0, 2 * math.pi, 4)
    omega = turn * (w1 * np.sin(2 * math.pi * t / p1 + ph[0]) + w2 * np.sin(2 * math.pi * t / p2 + ph[1]))
    heading = rng.uniform(0, 2 * math.pi) + np.concatenate([[0.0], np.cumsum(omega[:-1])])
    yaw_rate = math.radians(rng.uniform(*p.yaw_rate_deg)) * rng.choice([-1.0, 1.0])
    angle = rng.uniform(0, 2 * math.pi) + yaw_rate * t + math.radians(p.yaw_wobble_deg) * np.sin(
        2 * math.pi * t / rng.uniform(60, 160) + ph[2])
    scale = rng.uniform(*p.scale0) * np.exp(
        rng.uniform(*p.altitude_amp) * np.sin(2 * math.pi * t / rng.uniform(*p.altitude_period) + ph[3]))
    dy = np.concatenate([[0.0], np.cumsum(speed * np.sin(heading[:-1]))])
    dx = np.concatenate([[0.0], np.cumsum(speed * np.cos(heading[:-1]))])

    margin = footprint_radius(size, float(scale.max()))
    h, w = map_shape
    avail = np.array([h - 2 * margin, w - 2 * margin])
    if (avail <= 0).any():
        raise ValueError(f"map {map_shape} too small for {size} frames at scale {scale.max():.2f}")
    lo = np.array([dy.min(), dx.min()])
    extent = np.array([dy.max(), dx.max()]) - lo
    shrink = float(min(1.0, *(avail / np.maximum(extent, 1e-9))))
    slack = np.maximum(avail - extent * shrink, 0.0)
    start = margin + rng.uniform(0, 1, 2) * slack - lo * shrink
    cy, cx = start[0] + dy * shrink, start[1] + dx * shrink
    return [DronePose(float(a), float(b), float(c), float(d)) for a, b, c, d in zip(cy, cx, angle, scale)]
