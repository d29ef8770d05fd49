"""A procedurally generated 2.5-D side-view street world and its fast frame renderer.

The world is a stack of four painted layers (sky, buildings, mid-ground, near ground; see
:mod:`.scenery`) that scroll with different parallax factors as the camera moves sideways along
the street, so nearer things move faster and occlusions change over time. Rendering is a pure
numpy gather (nearest neighbour): per frame, each layer is sampled at the camera's grid, the
front-most opaque layer wins, and its class, instance id, albedo and textures are gathered once.

Conventions: world coordinates are (row, column) in world pixels; ``World.height`` rows with the
sky at the top and the road at the bottom. A :class:`CameraPose` gives the frame centre (near
layer coordinates) and the number of world rows the frame height spans (``view_h``, the zoom).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .appearance import Appearance
from .classes import SYNTHETIC
from .scenery import N_LAYERS, PARALLAX, TRANSPARENT, paint_world
from .seeding import rng_for

# Normalised depth (0 near .. 1 far) per layer; the near layer gets a row-dependent depth.
_LAYER_DEPTH = (1.0, 0.7, 0.48, 0.3)


@dataclass(frozen=True)
class CameraPose:
    """Camera state: frame centre ``(y, x)`` in world pixels (near-layer x) and zoom ``view_h``.

    ``view_h`` is the number of world rows covered by the frame height (bigger = zoomed out).
    """

    x: float
    y: float
    view_h: float


@dataclass
class Frame:
    """One rendered frame.

    image: (H, W, 3) uint8 RGB; semantic: (H, W) uint8 class ids (see ``classes.SYNTHETIC``);
    instance: (H, W) int32 instance ids, 0 = none (ids are unique within a world and stable over a
    video, i.e. they are track ids); depth: (H, W) float32 in [0, 1] (1 = sky), used by the fog shift.
    """

    image: np.ndarray
    semantic: np.ndarray
    instance: np.ndarray
    depth: np.ndarray


@dataclass
class World:
    """Painted layer stack. Arrays are (L, H, W[, 3]) with L = 4 layers, back to front.

    sem: uint8 class ids (255 = transparent); inst: int32 instance ids; base: uint8 albedo;
    tex / tex2: int8 luminance texture and the alternative texture used by the drift shift;
    depth_rows: (L, H) float32 normalised depth of each layer row.
    """

    seed: int
    height: int
    width: int
    sem: np.ndarray
    inst: np.ndarray
    base: np.ndarray
    tex: np.ndarray
    tex2: np.ndarray
    depth_rows: np.ndarray
    parallax: np.ndarray
    y_sidewalk: int
    y_road: int
    num_instances: int

    @property
    def anchor(self) -> float:
        """Column at which all layers are aligned; layers with parallax < 1 scroll relative to it."""
        return self.width / 2.0

    @classmethod
    def generate(cls, seed: int, width: int = 2048, height: int = 256) -> "World":
        """Paint a world of ``height`` x ``width`` world pixels from ``seed`` (about 0.1 s per 1000 columns)."""
        if height < 64 or width < 64:
            raise ValueError("world must be at least 64x64")
        rng = rng_for(seed, "world")
        c, lay, tex, tex2 = paint_world(rng, height, width)
        if np.any(c.sem[0] == TRANSPARENT):
            raise AssertionError("sky layer must be opaque")
        depth = np.empty((N_LAYERS, height), np.float32)
        depth[:] = np.float32(_LAYER_DEPTH)[:, None]
        rows = np.arange(height, dtype=np.float32)
        near = np.clip((rows - lay.y_sw) / max(height - lay.y_sw, 1), 0, 1)
        depth[3] = np.where(rows < lay.y_sw, 0.4, 0.3 - 0.18 * near)
        return cls(
            seed=seed, height=height, width=width, sem=c.sem, inst=c.inst, base=c.base, tex=tex, tex2=tex2,
            depth_rows=depth, parallax=np.asarray(PARALLAX, np.float64), y_sidewalk=lay.y_sw, y_road=lay.y_rd,
            num_instances=c.next_instance - 1,
        )

    # ----------------------------------------------------------------------------------------------
    def sample_grid(self, pose: CameraPose, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """World rows (H,) and per-layer columns (L, W) sampled by a frame of ``size = (H, W)``."""
        h, w = size
        s = pose.view_h / h
        rows = np.floor(pose.y + (np.arange(h) + 0.5 - h / 2) * s).astype(np.intp)
        np.clip(rows, 0, self.height - 1, out=rows)
        xl = self.anchor + self.parallax * (pose.x - self.anchor)  # (L,)
        cols = np.floor(xl[:, None] + (np.arange(w) + 0.5 - w / 2)[None, :] * s).astype(np.intp)
        np.clip(cols, 0, self.width - 1, out=cols)
        return rows, cols

    def render(
        self, pose: CameraPose, size: tuple[int, int] = (128, 160), appearance: Appearance | None = None
    ) -> Frame:
        """Render the frame seen from ``pose`` at ``size = (H, W)``; ``appearance`` None = clean."""
        rows, cols = self.sample_grid(pose, size)
        h, w = size
        plane = self.height * self.width
        choice = np.zeros((h, w), np.intp)
        flat_rows = rows[:, None] * self.width
        sem_flat = self.sem.reshape(-1)
        for layer in range(1, N_LAYERS):
            idx = layer * plane + flat_rows + cols[layer][None, :]
            choice[sem_flat[idx] != TRANSPARENT] = layer
        col_sel = cols[choice, np.arange(w)[None, :]]
        flat = choice * plane + flat_rows + col_sel
        sem = sem_flat[flat]
        inst = self.inst.reshape(-1)[flat]
        base = self.base.reshape(-1, 3)[flat]
        tex = self.tex.reshape(-1)[flat]
        depth = self.depth_rows[choice, rows[:, None]]
        if appearance is None:
            img = np.clip(base.astype(np.int16) + tex[..., None], 0, 255).astype(np.uint8)
        else:
            img = appearance.apply(sem, base, tex, self.tex2.reshape(-1)[flat])
        return Frame(image=img, semantic=sem, instance=inst, depth=depth.astype(np.float32))

    def class_histogram(self) -> np.ndarray:
        """(C,) visible-pixel counts per class over the whole world (front-most layer), for checks."""
        vis = self.sem[0].copy()
        for layer in range(1, N_LAYERS):
            m = self.sem[layer] != TRANSPARENT
            vis[m] = self.sem[layer][m]
        return np.bincount(vis.reshape(-1), minlength=SYNTHETIC.num_classes)[: SYNTHETIC.num_classes]
