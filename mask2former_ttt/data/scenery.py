"""Procedural street scenery: paints the four depth layers of a side-view street world.

Layers, back to front (index: content, parallax factor):

* 0 ``sky``: gradient + clouds, fully opaque (parallax 0.08);
* 1 ``buildings``: facades with windows, doors, shop fronts, brick/plaster/panel textures (0.55);
* 2 ``mid``: terrain strips, hedges, fences (with see-through gaps), trees (trunk + canopy) (0.8);
* 3 ``near``: sidewalk, road with lane marks, poles / street lamps with traffic signs, persons on the
  sidewalk and parked cars on the road (1.0). Persons and cars carry instance ids.

Each layer stores, per world pixel, a class id (255 = transparent), an instance id, a base colour
(albedo) and an additive luminance *pattern* (mortar lines, tiles, slats). Class-dependent grain
(``tex``) and an alternative texture (``tex2``, what the ``drift`` shift blends towards) are added
by :func:`finish_textures`. All geometry is in world pixels and scales with ``u = height / 256``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .classes import (
    BUILDING, CAR, FENCE, PERSON, POLE, ROAD, SIDEWALK, SKY, TERRAIN, TRAFFIC_SIGN, VEGETATION,
)
from .noise import smooth_noise, smooth_noise_1d

N_LAYERS = 4
LAYER_NAMES = ("sky", "buildings", "mid", "near")
PARALLAX = (0.08, 0.55, 0.8, 1.0)
TRANSPARENT = 255

# Per-class grain amplitudes (fine, medium, coarse noise), in 0..255 luminance units.
_GRAIN = np.zeros((256, 3), np.float32)
_GRAIN[[ROAD, SIDEWALK, BUILDING, FENCE, POLE, TRAFFIC_SIGN, VEGETATION, TERRAIN, SKY, PERSON, CAR]] = [
    (9, 3, 5), (5, 2, 3), (3, 4, 3), (4, 5, 0), (3, 0, 0), (2, 0, 0), (7, 15, 6), (10, 5, 4), (1, 2, 0),
    (4, 4, 0), (2, 1, 0),
]
# Alternative texture for the drift shift: (fine, coarse, stripes) amplitudes per class.
_GRAIN2 = np.zeros((256, 3), np.float32)
_GRAIN2[[ROAD, SIDEWALK, BUILDING, FENCE, POLE, TRAFFIC_SIGN, VEGETATION, TERRAIN, SKY, PERSON, CAR]] = [
    (3, 16, 12), (14, 6, 0), (10, 3, 14), (12, 0, 6), (10, 0, 8), (8, 0, 6), (3, 4, 16), (3, 14, 12),
    (6, 8, 0), (10, 0, 10), (12, 4, 10),
]


def _jitter(rng: np.random.Generator, rgb: tuple[int, int, int] | np.ndarray, amount: float) -> np.ndarray:
    return np.clip(np.asarray(rgb, np.float32) + rng.uniform(-amount, amount, 3), 0, 255)


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Local pixel-centre coordinates ``(yy (h,1), xx (1,w))`` as float32."""
    return (np.arange(h, dtype=np.float32)[:, None] + 0.5), (np.arange(w, dtype=np.float32)[None, :] + 0.5)


@dataclass(frozen=True)
class Layout:
    """Vertical layout of a world (rows): building base / sidewalk top ``y_sw``, road top ``y_rd``."""

    height: int
    width: int
    y_sw: int
    y_rd: int

    @property
    def u(self) -> float:
        return self.height / 256.0


class Canvas:
    """Mutable layer stack being painted. Arrays are (L, H, W[, 3])."""

    def __init__(self, height: int, width: int, rng: np.random.Generator) -> None:
        shape = (N_LAYERS, height, width)
        self.rng = rng
        self.sem = np.full(shape, TRANSPARENT, np.uint8)
        self.inst = np.zeros(shape, np.int32)
        self.base = np.zeros(shape + (3,), np.uint8)
        self.pattern = np.zeros(shape, np.int16)
        self.next_instance = 1
        # Medium-scale noise per layer, also used by painters for ragged outlines.
        self.n_med = np.stack([smooth_noise(rng, (height, width), 1.5) for _ in range(N_LAYERS)])

    def new_instance(self) -> int:
        i = self.next_instance
        self.next_instance += 1
        return i

    def paint(
        self,
        layer: int,
        cls: int,
        y0: int,
        x0: int,
        mask: np.ndarray,
        rgb: np.ndarray | tuple[float, float, float],
        pattern: np.ndarray | float = 0.0,
        inst: int = 0,
    ) -> None:
        """Paint ``mask`` (h, w) bool with top-left corner at world (y0, x0); clips to the canvas.

        ``rgb`` is (3,) or (h, w, 3); ``pattern`` a scalar or (h, w) luminance offset.
        """
        h, w = mask.shape
        _, hh, ww = self.sem.shape
        ya, yb, xa, xb = max(y0, 0), min(y0 + h, hh), max(x0, 0), min(x0 + w, ww)
        if ya >= yb or xa >= xb:
            return
        crop = (slice(ya - y0, yb - y0), slice(xa - x0, xb - x0))
        m = mask[crop]
        if not m.any():
            return
        sl = (layer, slice(ya, yb), slice(xa, xb))
        self.sem[sl][m] = cls
        self.inst[sl][m] = inst
        rgb = np.asarray(rgb, np.float32)
        if rgb.ndim == 3:
            rgb = np.broadcast_to(rgb, (h, w, 3))
        col = rgb[crop][m] if rgb.ndim == 3 else rgb
        self.base[sl][m] = np.clip(col + 0.5, 0, 255).astype(np.uint8)
        pat = np.asarray(pattern, np.float32)
        if pat.ndim == 2:
            pat = np.broadcast_to(pat, (h, w))
        self.pattern[sl][m] = np.round(pat[crop][m] if pat.ndim == 2 else pat).astype(np.int16)


# --- layer 0: sky ----------------------------------------------------------------------------------
def paint_sky(c: Canvas, lay: Layout) -> None:
    rng, h, w = c.rng, lay.height, lay.width
    top = _jitter(rng, (92, 148, 212), 12)
    hor = _jitter(rng, (188, 208, 230), 8)
    t = np.clip(np.arange(h, dtype=np.float32) / max(lay.y_sw, 1), 0, 1)[:, None, None]
    base = top * (1 - t) + hor * t  # (h,1,3)
    clouds = smooth_noise(rng, (h, w), (5 * lay.u, 18 * lay.u))
    thr = rng.uniform(0.2, 1.1)
    cover = np.clip((clouds - thr) / 0.8, 0, 1) * 0.85
    cloud_col = _jitter(rng, (236, 238, 242), 6)
    rgb = base * (1 - cover[..., None]) + cloud_col * cover[..., None]
    c.paint(0, SKY, 0, 0, np.ones((h, w), bool), rgb)


# --- layer 1: buildings ----------------------------------------------------------------------------
_FACADES = ((192, 172, 140), (162, 84, 62), (132, 132, 138), (214, 208, 196), (122, 96, 76), (172, 152, 120),
            (104, 114, 126), (186, 120, 92))


def paint_buildings(c: Canvas, lay: Layout) -> None:
    rng, u = c.rng, lay.u
    x = -int(rng.integers(0, 40))
    while x < lay.width:
        if rng.random() < 0.35:
            x += int(rng.uniform(4, 30) * u)
        bw = int(rng.uniform(50, 170) * u)
        top = int(lay.y_sw - rng.uniform(0.22 * lay.height, lay.y_sw - 0.05 * lay.height))
        bottom = lay.y_sw + int(10 * u)
        _paint_building(c, lay, x, bw, max(top, 2), bottom)
        x += bw


def _paint_building(c: Canvas, lay: Layout, x0: int, bw: int, top: int, bottom: int) -> None:
    rng, u = c.rng, lay.u
    h = bottom - top
    yy, xx = _grid(h, bw)
    facade = _jitter(rng, _FACADES[rng.integers(len(_FACADES))], 14)
    rgb = np.broadcast_to(facade, (h, bw, 3)).copy()
    style = int(rng.integers(3))
    iy, ix = yy.astype(int), xx.astype(int)
    if style == 0:  # brick: mortar rows and staggered joints
        row = iy // max(int(5 * u), 2)
        mortar = (iy % max(int(5 * u), 2) == 0) | (((ix + (row % 2) * int(5 * u)) % max(int(10 * u), 3)) == 0)
        pattern = np.where(mortar, -16.0, 0.0).astype(np.float32)
    elif style == 1:  # plaster: smooth, with slow stains
        pattern = np.broadcast_to(np.float32(0), (h, bw)).copy()
    else:  # panels
        p1, p2 = max(int(rng.uniform(9, 16) * u), 3), max(int(rng.uniform(12, 20) * u), 3)
        pattern = np.where((ix % p1 == 0) | (iy % p2 == 0), -18.0, 0.0).astype(np.float32)
    # cornice
    rgb[: max(int(3 * u), 1)] *= 0.72
    # windows
    cw, ch = rng.uniform(12, 22) * u, rng.uniform(16, 24) * u
    fw, fh = rng.uniform(0.42, 0.65), rng.uniform(0.42, 0.65)
    glass = _jitter(rng, (48, 62, 84), 10)
    ground = lay.y_sw - top - ch * 1.3  # windows stop above the ground floor (local rows)
    ncol = max(int((bw - 6 * u) // cw), 0)
    side = (bw - ncol * cw) / 2
    cx = (xx - side) / cw
    cy = (yy - 6 * u) / ch
    in_w = (cx >= 0) & (cx < ncol) & (np.abs(cx % 1 - 0.5) < fw / 2) & (cy >= 0) & (yy < ground) & (
        np.abs(cy % 1 - 0.5) < fh / 2
    )
    lit = rng.random((int(h // ch) + 2, ncol + 1)) < 0.12
    lit_px = lit[np.clip(cy, 0, lit.shape[0] - 1).astype(int), np.clip(cx, 0, ncol).astype(int)]
    refl = 1.0 + 0.35 * (1 - (cy % 1))[..., None]
    win_col = np.where(lit_px[..., None], np.float32([205, 184, 112]), glass * refl)
    rgb = np.where(in_w[..., None], win_col, rgb)
    pattern = np.where(in_w, 0.0, pattern)
    # ground floor: a door or a shop window
    gy0 = lay.y_sw - top - int(rng.uniform(16, 24) * u)
    if rng.random() < 0.5:
        dx = rng.uniform(0.15, 0.85) * bw
        door = (np.abs(xx - dx) < 5 * u) & (yy >= gy0)
        rgb = np.where(door[..., None], _jitter(rng, (80, 58, 42), 12), rgb)
    else:
        shop = (xx > 0.12 * bw) & (xx < 0.88 * bw) & (yy >= gy0 + 2 * u) & (yy < lay.y_sw - top - 3 * u)
        rgb = np.where(shop[..., None], glass * 0.8 + 12, rgb)
    c.paint(1, BUILDING, top, x0, np.ones((h, bw), bool), rgb, pattern)
    if rng.random() < 0.25:  # pitched roof
        rh = int(rng.uniform(10, 24) * u)
        yy, xx = _grid(rh, bw)
        roof = (rh - yy) < (1 - np.abs(xx / bw * 2 - 1)) * rh
        c.paint(1, BUILDING, top - rh, x0, roof, _jitter(rng, (110, 70, 60), 20))


# --- layer 2: mid-ground ---------------------------------------------------------------------------
def paint_mid(c: Canvas, lay: Layout) -> None:
    rng, u = c.rng, lay.u
    x = -int(rng.integers(0, 60))
    while x < lay.width:  # terrain strips with hedges
        sw = int(rng.uniform(60, 220) * u)
        if rng.random() < 0.55:
            _paint_terrain(c, lay, x, sw)
        x += sw + int(rng.uniform(0, 60) * u)
    x = int(rng.uniform(0, 100) * u)
    while x < lay.width:  # fences
        fw = int(rng.uniform(40, 140) * u)
        if rng.random() < 0.45:
            _paint_fence(c, lay, x, fw)
        x += fw + int(rng.uniform(30, 200) * u)
    x = int(rng.uniform(0, 120) * u)
    while x < lay.width:  # trees
        _paint_tree(c, lay, x)
        x += int(rng.uniform(70, 230) * u)


def _paint_terrain(c: Canvas, lay: Layout, x0: int, sw: int) -> None:
    rng, u = c.rng, lay.u
    top = lay.y_sw - int(rng.uniform(6, 16) * u)
    h = lay.y_sw + int(8 * u) - top
    yy, _ = _grid(h, sw)
    edge = 2 * u * smooth_noise_1d(rng, sw, 4 * u)[None, :]
    col = _jitter(rng, ((128, 150, 76), (150, 140, 92), (112, 136, 70))[rng.integers(3)], 10)
    c.paint(2, TERRAIN, top, x0, yy > edge + 2 * u, col)
    if rng.random() < 0.45:  # hedge on the strip
        hw = int(sw * rng.uniform(0.3, 0.9))
        hx = x0 + int(rng.uniform(0, sw - hw + 1))
        ht = int(rng.uniform(12, 24) * u)
        yy, _ = _grid(ht + int(4 * u), hw)
        edge = 3 * u * smooth_noise_1d(rng, hw, 3 * u)[None, :]
        col = _jitter(rng, (58, 92, 44), 10)
        c.paint(2, VEGETATION, lay.y_sw - ht, hx, yy > edge + 3 * u, col * (0.85 + 0.3 * yy / (ht + 4 * u))[..., None])


def _paint_fence(c: Canvas, lay: Layout, x0: int, fw: int) -> None:
    rng, u = c.rng, lay.u
    fh = int(rng.uniform(16, 30) * u)
    period = max(int(rng.uniform(6, 9) * u), 3)
    gap = max(int(rng.uniform(2, 3) * u), 1)
    yy, xx = _grid(fh + int(4 * u), fw)
    rail = max(int(2 * u), 1)
    rails = (np.abs(yy - 4 * u) < rail) | (np.abs(yy - (fh - 3 * u)) < rail)
    mask = ((xx.astype(int) % period) >= gap) | rails
    wood = rng.random() < 0.5
    col = _jitter(rng, (142, 106, 72) if wood else (112, 117, 124), 14)
    pattern = 6 * np.sin(xx * 2.1)  # vertical grain
    c.paint(2, FENCE, lay.y_sw - fh, x0, np.broadcast_to(mask, (yy.shape[0], fw)), col, pattern)


def _paint_tree(c: Canvas, lay: Layout, x: int) -> None:
    rng, u = c.rng, lay.u
    tw = max(int(rng.uniform(4, 7) * u), 2)
    th = int(rng.uniform(22, 40) * u)
    base_y = lay.y_sw + int(rng.uniform(0, 5) * u)
    trunk = _jitter(rng, (92, 66, 46), 12)
    c.paint(2, VEGETATION, base_y - th, x - tw // 2, np.ones((th, tw), bool), trunk)
    rx, ry = rng.uniform(16, 34) * u, rng.uniform(14, 30) * u
    cy = base_y - th - ry * 0.55
    h, w = int(2.6 * ry), int(2.6 * rx)
    y0, x0 = int(cy - 1.3 * ry), int(x - 1.3 * rx)
    yy, xx = _grid(h, w)
    dy, dx = (yy + y0 - cy) / ry, (xx + x0 - x) / rx
    ys, xs = slice(max(y0, 0), max(y0, 0) + h), slice(max(x0, 0), max(x0, 0) + w)
    n = c.n_med[2, ys, xs]
    nn = np.zeros((h, w), np.float32)
    nn[: n.shape[0], : n.shape[1]] = n
    mask = dx**2 + dy**2 < 1 + 0.3 * nn
    col = _jitter(rng, ((56, 96, 40), (72, 112, 46), (46, 82, 52), (92, 122, 52))[rng.integers(4)], 10)
    shade = (1.08 - 0.3 * np.clip((dy + 1) / 2, 0, 1))[..., None]
    c.paint(2, VEGETATION, y0, x0, mask, np.broadcast_to(col * shade, (h, w, 3)))


# --- layer 3: near ground --------------------------------------------------------------------------
def paint_ground(c: Canvas, lay: Layout) -> None:
    rng, u, w = c.rng, lay.u, lay.width
    # sidewalk with tiles and a curb
    sh = lay.y_rd - lay.y_sw
    yy, xx = _grid(sh, w)
    p = max(int(rng.uniform(12, 18) * u), 4)
    tiles = ((yy.astype(int) % p) == 0) | ((xx.astype(int) % (p + 3)) == 0)
    col = _jitter(rng, (166, 160, 150), 14)
    curb = yy >= sh - 3 * u
    rgb = np.where(curb[..., None], _jitter(rng, (198, 198, 192), 6), np.broadcast_to(col, (sh, w, 3)))
    c.paint(3, SIDEWALK, lay.y_sw, 0, np.ones((sh, w), bool), rgb, np.where(tiles & ~curb, -20.0, 0.0))
    # road with dashed lane marks and an optional edge line
    rh = lay.height - lay.y_rd
    yy, xx = _grid(rh, w)
    col = _jitter(rng, (80, 80, 86), 10)
    lane_y = 0.55 * rh
    dash = max(int(rng.uniform(22, 34) * u), 4)
    marks = (np.abs(yy - lane_y) < 1.6 * u) & (((xx + rng.integers(0, 2 * dash)) // dash) % 2 == 0)
    if rng.random() < 0.5:
        marks = marks | (np.abs(yy - 5 * u) < 1.0 * u)
    rgb = np.where(marks[..., None], _jitter(rng, (214, 214, 204), 8), np.broadcast_to(col, (rh, w, 3)))
    c.paint(3, ROAD, lay.y_rd, 0, np.ones((rh, w), bool), rgb)


def paint_poles(c: Canvas, lay: Layout) -> None:
    rng, u = c.rng, lay.u
    x = int(rng.uniform(0, 120) * u)
    while x < lay.width:
        pw = max(int(rng.uniform(3, 5) * u), 2)
        base_y = lay.y_sw + int(rng.uniform(4, 14) * u)
        ph = int(rng.uniform(70, 115) * u)
        top = max(base_y - ph, 1)
        yy, xx = _grid(base_y - top, pw)
        col = _jitter(rng, (122, 126, 132), 14)
        shade = (0.7 + 0.6 * xx / pw)[..., None]
        c.paint(3, POLE, top, x, np.ones((base_y - top, pw), bool), col * shade)
        kind = rng.random()
        if kind < 0.4:  # street lamp: arm + head
            arm = int(rng.uniform(10, 18) * u)
            th = max(int(2 * u), 1)
            c.paint(3, POLE, top, x, np.ones((th, arm), bool), col)
            c.paint(3, POLE, top, x + arm - int(5 * u), np.ones((int(4 * u) + 1, int(6 * u) + 1), bool), col * 0.8)
        elif kind < 0.85:  # traffic sign
            _paint_sign(c, lay, x + pw // 2, top + int(rng.uniform(4, 14) * u))
        x += int(rng.uniform(90, 260) * u)


def _paint_sign(c: Canvas, lay: Layout, cx: int, cy: int) -> None:
    rng, u = c.rng, lay.u
    r = rng.uniform(6, 9) * u
    n = int(2 * r) + 2
    yy, xx = _grid(n, n)
    dy, dx = yy - n / 2, xx - n / 2
    shape = int(rng.integers(4))
    if shape == 0:  # round prohibitory: red rim, white face
        mask = dx**2 + dy**2 < r**2
        inner = dx**2 + dy**2 < (0.7 * r) ** 2
        rgb = np.where(inner[..., None], np.float32([235, 235, 235]), np.float32([200, 30, 36]))
    elif shape == 1:  # round mandatory: blue
        mask = dx**2 + dy**2 < r**2
        arrow = (np.abs(dx) < 0.15 * r) & (np.abs(dy) < 0.6 * r)
        rgb = np.where(arrow[..., None], np.float32([240, 240, 240]), np.float32([30, 70, 170]))
    elif shape == 2:  # warning triangle
        mask = (dy < r * 0.8) & (np.abs(dx) < (dy + r) * 0.6)
        inner = (dy < r * 0.55) & (np.abs(dx) < (dy + 0.6 * r) * 0.5)
        rgb = np.where(inner[..., None], np.float32([236, 222, 90]), np.float32([196, 32, 36]))
    else:  # rectangular information sign
        mask = (np.abs(dx) < r) & (np.abs(dy) < 0.7 * r)
        rgb = np.broadcast_to(_jitter(rng, ((30, 80, 170), (20, 120, 60))[rng.integers(2)], 10), (n, n, 3))
    c.paint(3, TRAFFIC_SIGN, cy - n // 2, cx - n // 2, mask, np.broadcast_to(rgb, (n, n, 3)))


_SHIRTS = ((200, 40, 40), (40, 60, 160), (230, 230, 225), (40, 40, 44), (60, 130, 70), (230, 190, 60),
           (140, 80, 150), (90, 150, 200), (200, 120, 60), (120, 120, 125))
_PANTS = ((40, 50, 90), (30, 30, 34), (110, 110, 115), (160, 140, 100), (70, 60, 50))
_SKIN = ((240, 200, 170), (210, 160, 120), (160, 110, 80), (110, 72, 50))
_HAIR = ((30, 24, 20), (90, 60, 30), (190, 160, 90), (150, 150, 150))


def paint_persons(c: Canvas, lay: Layout) -> None:
    rng, u = c.rng, lay.u
    x = int(rng.uniform(0, 80) * u)
    while x < lay.width:
        fy = rng.uniform(lay.y_sw + 5 * u, lay.y_rd - 3 * u)
        depth = (fy - lay.y_sw) / max(lay.y_rd - lay.y_sw, 1)
        _paint_person(c, lay, x, int(fy), rng.uniform(40, 56) * u * (0.92 + 0.2 * depth))
        x += int(rng.uniform(25, 170) * u)


def _paint_person(c: Canvas, lay: Layout, cx: int, feet: int, h: float) -> None:
    rng = c.rng
    hh, ww = int(h), int(0.5 * h) | 1
    yy, xx = _grid(hh, ww)
    Y, X = yy / h, (xx - ww / 2) / h
    stride = rng.uniform(-0.12, 0.12)
    coat = rng.random() < 0.25
    t_bot = 0.68 if coat else 0.52
    head = (X**2 + (Y - 0.085) ** 2) < 0.072**2
    hair = ((X**2 + (Y - 0.075) ** 2) < 0.078**2) & (Y < 0.075)
    neck = (np.abs(X) < 0.03) & (Y >= 0.14) & (Y < 0.17)
    torso = (Y >= 0.16) & (Y < t_bot) & (np.abs(X) < 0.13 + 0.02 * (Y - 0.16) / 0.36)
    swing = stride * (Y - 0.17)
    arms = (Y >= 0.17) & (Y < 0.5) & (np.abs(np.abs(X) - 0.16 + swing * np.sign(X)) < 0.032)
    hands = arms & (Y >= 0.44)
    legy = np.clip(Y - 0.5, 0, None)
    legs = (Y >= 0.5) & (Y < 0.97) & (
        (np.abs(X + 0.055 - stride * legy) < 0.05) | (np.abs(X - 0.055 + stride * legy) < 0.05)
    )
    shoes = legs & (Y >= 0.93)
    mask = head | hair | neck | torso | arms | legs
    skin = _jitter(rng, _SKIN[rng.integers(len(_SKIN))], 8)
    shirt = _jitter(rng, _SHIRTS[rng.integers(len(_SHIRTS))], 18)
    pants = _jitter(rng, _PANTS[rng.integers(len(_PANTS))], 12)
    rgb = np.zeros((hh, ww, 3), np.float32)
    for part, col in ((legs, pants), (shoes, np.float32([28, 26, 26])), (torso | arms, shirt),
                      (hands | neck | head, skin), (hair, _jitter(rng, _HAIR[rng.integers(len(_HAIR))], 10))):
        rgb[part] = col
    rgb *= (1.05 - 0.15 * Y)[..., None]
    c.paint(3, PERSON, feet - hh, cx - ww // 2, mask, rgb, inst=c.new_instance())


_CAR_COLORS = ((205, 205, 210), (32, 32, 36), (232, 232, 232), (156, 30, 30), (40, 62, 134), (72, 76, 82),
               (42, 92, 62), (206, 172, 62), (120, 30, 40), (90, 120, 160))


def paint_cars(c: Canvas, lay: Layout) -> None:
    rng, u = c.rng, lay.u
    cars = []
    x = int(rng.uniform(-40, 100) * u)
    road_h = lay.height - lay.y_rd
    while x < lay.width:
        yb = rng.uniform(lay.y_rd + 0.5 * road_h, lay.height - 3 * u)
        near = (yb - lay.y_rd) / road_h
        length = rng.uniform(85, 135) * u * (0.85 + 0.25 * near)
        cars.append((yb, x, length))
        x += int(length + rng.uniform(-0.3 * length, 190 * u))
    for yb, x, length in sorted(cars):  # far cars first, near cars occlude them
        _paint_car(c, int(x), int(yb), length)


def _paint_car(c: Canvas, x0: int, yb: int, length: float) -> None:
    rng = c.rng
    van = rng.random() < 0.2
    hc = 0.46 if van else 0.42
    h, w = int(hc * length) + 1, int(length) + 1
    yy, xx = _grid(h, w)
    X, Yb = xx / length, (h - yy) / length
    r = rng.uniform(0.095, 0.115)
    wheels_x = (0.2, 0.8)
    wheel = np.zeros((h, w), bool)
    arch = np.zeros((h, w), bool)
    hub = np.zeros((h, w), bool)
    for wx in wheels_x:
        d2 = (X - wx) ** 2 + (Yb - r) ** 2
        wheel |= d2 < r**2
        arch |= d2 < (1.15 * r) ** 2
        hub |= d2 < (0.5 * r) ** 2
    body_top = 0.27 if not van else 0.3
    body = (((X - 0.5) / 0.5) ** 6 + ((Yb - (0.06 + body_top) / 2) / ((body_top - 0.06) / 2)) ** 6) < 1
    body &= ~arch
    cab_top = hc - 0.02
    f = np.clip((Yb - body_top + 0.01) / (cab_top - body_top), 0, 1)
    if van:
        a, b = 0.06 + 0.02 * f, 0.8 - 0.14 * f
    else:
        a, b = 0.2 + 0.1 * f, 0.76 - 0.14 * f
    cabin = (Yb >= body_top - 0.01) & (Yb < cab_top) & (X > a) & (X < b)
    window = cabin & (Yb > body_top + 0.02) & (Yb < cab_top - 0.02) & (X > a + 0.02) & (X < b - 0.02)
    window &= np.abs(X - (a + b) / 2) > 0.012
    color = _jitter(rng, _CAR_COLORS[rng.integers(len(_CAR_COLORS))], 12)
    rgb = color * (0.78 + 0.8 * Yb)[..., None]
    glass = np.float32([52, 62, 78]) * (1.0 + 0.6 * (Yb - body_top) / (cab_top - body_top))[..., None]
    rgb = np.where(window[..., None], glass, rgb)
    lights_y = np.abs(Yb - 0.21) < 0.022
    rgb = np.where((lights_y & (X > 0.965))[..., None], np.float32([236, 226, 170]), rgb)
    rgb = np.where((lights_y & (X < 0.035))[..., None], np.float32([190, 30, 30]), rgb)
    rgb = np.where(wheel[..., None], np.float32([26, 26, 28]), rgb)
    rgb = np.where(hub[..., None], np.float32([150, 150, 156]), rgb)
    mask = body | cabin | wheel
    pattern = np.where(body & ~wheel & ((np.abs(Yb - 0.16) < 0.006) | (np.abs(X - 0.5) < 0.004)), -14.0, 0.0)
    if rng.random() < 0.5:  # facing left
        mask, rgb, pattern = mask[:, ::-1], rgb[:, ::-1], pattern[:, ::-1]
    c.paint(3, CAR, yb - h, x0, np.ascontiguousarray(mask), np.ascontiguousarray(rgb),
            np.ascontiguousarray(pattern), inst=c.new_instance())


# --- textures -------------------------------------------------------------------------------------
def finish_textures(c: Canvas, lay: Layout) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel luminance texture ``tex`` and alternative ``tex2``, both (L, H, W) int8.

    ``tex`` = class grain (fine/medium/coarse noise) + painted pattern; ``tex2`` = a different class
    texture (fine/coarse noise + diagonal stripes) used only by the ``drift`` shift.
    """
    rng = c.rng
    shape = c.sem.shape
    fine = rng.standard_normal(shape, dtype=np.float32)
    coarse = np.stack([smooth_noise(rng, shape[1:], 6 * lay.u) for _ in range(N_LAYERS)])
    sem = c.sem
    tex = _GRAIN[:, 0][sem] * fine
    tex += _GRAIN[:, 1][sem] * c.n_med
    tex += _GRAIN[:, 2][sem] * coarse
    tex += c.pattern
    yy = np.arange(shape[1], dtype=np.float32)[:, None]
    xx = np.arange(shape[2], dtype=np.float32)[None, :]
    stripes = np.sign(np.sin((xx + yy) * np.float32(2 * np.pi / (7 * lay.u)))).astype(np.float32)
    tex2 = _GRAIN2[:, 0][sem] * fine[:, :, ::-1]
    tex2 += _GRAIN2[:, 1][sem] * coarse[::-1]
    tex2 += _GRAIN2[:, 2][sem] * stripes
    out = []
    for t in (tex, tex2):
        np.clip(np.round(t, out=t), -127, 127, out=t)
        out.append(t.astype(np.int8))
    return out[0], out[1]


def make_layout(rng: np.random.Generator, height: int, width: int) -> Layout:
    """Random vertical layout: building base at ~59% of the height, sidewalk ~13%, road below."""
    y_sw = int(height * rng.uniform(0.56, 0.62))
    y_rd = y_sw + int(height * rng.uniform(0.12, 0.15))
    return Layout(height=height, width=width, y_sw=y_sw, y_rd=y_rd)


def paint_world(rng: np.random.Generator, height: int, width: int) -> tuple[Canvas, Layout, np.ndarray, np.ndarray]:
    """Paint all layers; returns the canvas, its layout and the (tex, tex2) int8 arrays."""
    lay = make_layout(rng, height, width)
    c = Canvas(height, width, rng)
    paint_sky(c, lay)
    paint_buildings(c, lay)
    paint_mid(c, lay)
    paint_ground(c, lay)
    paint_poles(c, lay)
    paint_persons(c, lay)
    paint_cars(c, lay)
    tex, tex2 = finish_textures(c, lay)
    return c, lay, tex, tex2
