"""Procedural painting of one top-down world map for domain B (drone / aerial views).

:func:`paint_map` builds, from a seed, an :class:`AerialMap` of ``shape = (H_w, W_w)`` pixels (768 x 768 for
128 x 160 frames):

1. stuff layout from two low-frequency spectral noise fields: ``water`` (lakes, the lowest ``water_frac`` of an
   "elevation" field), then ``grass`` / ``ground`` (bare soil) on land;
2. ``road``: 2-4 gently curving polylines of slowly varying width crossing the map, with a soil shoulder,
   dashed centre lines and solid edge lines (one Euclidean distance transform gives distance, arc length and
   width at every pixel);
3. ``roof`` (thing): rotated rectangles lined up along the roads (and a few scattered ones), pitched tile roofs
   (tile courses parallel to the ridge, sun-facing slope brighter, ridge cap, dark eaves) in terracotta / slate /
   brown, or flat concrete roofs with a parapet;
4. ``tree`` (stuff): round crowns with dark rims, a sun-side highlight and leafy speckle, clustered in groves;
5. ``vehicle`` (thing): small rotated rectangles in the road lanes, aligned with the road, with windscreen and
   rear-window marks;
6. textures (soil grain, grass speckle + mowing stripes, water ripples and glints, asphalt) and sun shadows
   cast by roofs, trees and vehicles (shadows change colours, never labels).

Geometry is given in pixels at ``g = 1`` (128-px frames) and multiplied by ``g``; object counts scale with the
map area over ``(768 g)^2``. Everything is vectorised numpy except small per-object windows; a 768 x 768 map
paints in well under a second. Output is deterministic for a given ``(seed, shape, g, params)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..seeding import rng_for
from .classes import GRASS, GROUND, ROAD, ROOF, TREE, VEHICLE, WATER
from .fields import fractal, smoothstep, spectral_noise


@dataclass(frozen=True)
class MapParams:
    """Layout knobs (lengths in px at ``g = 1``; counts per 768 x 768 px at ``g = 1``)."""

    water_frac: float = 0.12
    grass_frac: float = 0.55  # of the land
    n_roads: tuple[int, int] = (2, 4)
    road_half_width: tuple[float, float] = (4.5, 8.0)
    roof_attempts: int = 260
    roof_half_length: tuple[float, float] = (7.0, 20.0)
    roof_half_depth: tuple[float, float] = (5.0, 12.0)
    tree_attempts: int = 1100
    tree_radius: tuple[float, float] = (3.0, 8.5)
    vehicle_spacing: float = 45.0  # mean arc length between vehicles along a road
    shadow_length: float = 5.0


@dataclass
class AerialMap:
    """One painted world: ``image`` (H, W, 3) uint8, ``semantic`` (H, W) uint8 (class ids of
    :data:`~.classes.AERIAL`), ``instance`` (H, W) int32 (unique ids > 0 for roofs and vehicles, 0 on stuff)."""

    seed: int
    image: np.ndarray
    semantic: np.ndarray
    instance: np.ndarray
    g: float = 1.0
    _float_image: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.semantic.shape  # type: ignore[return-value]

    def float_image(self) -> np.ndarray:
        """``image`` as (H, W, 3) float32 (cached; what the camera samples from)."""
        if self._float_image is None:
            self._float_image = self.image.astype(np.float32)
        return self._float_image


@dataclass
class _Roads:
    """Road raster: per-pixel distance to the nearest centre-line point and that point's index; per-point
    arc length ``s``, half-width ``hw``, unit tangent ``(ty, tx)``, position ``(py, px)`` and road id."""

    dist: np.ndarray  # (H, W) float32
    near: np.ndarray  # (H, W) int32
    s: np.ndarray
    hw: np.ndarray
    ty: np.ndarray
    tx: np.ndarray
    py: np.ndarray
    px: np.ndarray
    road: np.ndarray

    @property
    def half_width(self) -> np.ndarray:
        """(H, W) half-width of the nearest road."""
        return self.hw[self.near]


def default_map_shape(size: tuple[int, int]) -> tuple[int, int]:
    """World map shape for frames of ``size = (H, W)``: square, ``4.8 * max(H, W)`` rounded up to 16."""
    side = 16 * math.ceil(4.8 * max(size) / 16)
    return side, side


def geometry_scale(size: tuple[int, int]) -> float:
    """``g`` for frames of ``size``: frame height / 128."""
    return size[0] / 128.0


# --- layout ---------------------------------------------------------------------------------------------
def _stuff_layout(rng: np.random.Generator, shape: tuple[int, int], g: float, p: MapParams) -> np.ndarray:
    elev = fractal(rng, shape, (150 * g, 45 * g), (1.0, 0.35))
    water = elev < np.quantile(elev, p.water_frac)
    veg = fractal(rng, shape, (80 * g, 22 * g), (1.0, 0.45))
    grass = ~water & (veg > np.quantile(veg[~water], 1.0 - p.grass_frac))
    return np.where(water, WATER, np.where(grass, GRASS, GROUND)).astype(np.uint8)


def _centerline(rng: np.random.Generator, shape: tuple[int, int], g: float) -> tuple[np.ndarray, np.ndarray]:
    """One road's centre line sampled every 1 px: float (y, x) arrays, entering and leaving the map."""
    h, w = shape
    margin = 12.0
    side = int(rng.integers(4))
    t = rng.uniform(0.1, 0.9)
    y, x = [(-margin, t * w), (h + margin, t * w), (t * h, -margin), (t * h, w + margin)][side]
    ty, tx = rng.uniform(0.25, 0.75) * h, rng.uniform(0.25, 0.75) * w
    heading = math.atan2(ty - y, tx - x)
    amps = rng.uniform(0.0015, 0.006, 2) / g * rng.choice([-1.0, 1.0], 2)
    periods = rng.uniform(120, 420, 2) * g
    phases = rng.uniform(0, 2 * math.pi, 2)
    n = int(3 * (h + w + 4 * margin))
    s = np.arange(n, dtype=np.float64)
    kappa = sum(a * np.sin(2 * math.pi * s / P + ph) for a, P, ph in zip(amps, periods, phases))
    head = heading + np.cumsum(kappa)
    ys = y + np.concatenate([[0.0], np.cumsum(np.sin(head[:-1]))])
    xs = x + np.concatenate([[0.0], np.cumsum(np.cos(head[:-1]))])
    inside = (ys > -margin - 1) & (ys < h + margin + 1) & (xs > -margin - 1) & (xs < w + margin + 1)
    # keep the first run inside the (padded) map: from the start until the line leaves it
    stop = int(np.argmin(inside)) if not inside.all() else n
    return ys[: max(stop, 2)], xs[: max(stop, 2)]


def _roads(rng: np.random.Generator, shape: tuple[int, int], g: float, p: MapParams) -> _Roads:
    h, w = shape
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("s", "hw", "ty", "tx", "py", "px", "road")}
    for r in range(int(rng.integers(p.n_roads[0], p.n_roads[1] + 1))):
        ys, xs = _centerline(rng, shape, g)
        s = np.arange(len(ys), dtype=np.float64)
        hw0 = rng.uniform(*p.road_half_width) * g
        hw = hw0 * (1 + 0.18 * np.sin(2 * math.pi * s / (rng.uniform(250, 600) * g) + rng.uniform(0, 2 * math.pi)))
        ty, tx = np.gradient(ys), np.gradient(xs)
        norm = np.hypot(ty, tx) + 1e-9
        for k, v in (("s", s), ("hw", hw), ("ty", ty / norm), ("tx", tx / norm), ("py", ys), ("px", xs),
                     ("road", np.full(len(ys), r))):
            cols[k].append(v)
    c = {k: np.concatenate(v) for k, v in cols.items()}
    iy, ix = np.round(c["py"]).astype(np.int64), np.round(c["px"]).astype(np.int64)
    ok = np.flatnonzero((iy >= 0) & (iy < h) & (ix >= 0) & (ix < w))
    center = np.zeros(shape, bool)
    index = np.zeros(shape, np.int32)
    center[iy[ok], ix[ok]] = True
    index[iy[ok], ix[ok]] = ok  # later roads overwrite earlier ones at crossings
    dist, (ny, nx) = ndimage.distance_transform_edt(~center, return_indices=True)
    near = index[ny, nx]
    return _Roads(dist.astype(np.float32), near, c["s"], c["hw"], c["ty"], c["tx"], c["py"], c["px"],
                  c["road"].astype(np.int32))


# --- object stamps --------------------------------------------------------------------------------------
def _stamp(cy: float, cx: float, theta: float, reach: float, shape: tuple[int, int]):
    """Window around ``(cy, cx)`` of radius ``reach``: (y-slice, x-slice, u, v) with ``u`` along ``theta``
    (the object's long axis) and ``v`` across it, both (h, w) float32 in px; None when off the map."""
    h, w = shape
    r = math.ceil(reach) + 1
    y0, y1 = max(0, int(math.floor(cy)) - r), min(h, int(math.floor(cy)) + r + 2)
    x0, x1 = max(0, int(math.floor(cx)) - r), min(w, int(math.floor(cx)) + r + 2)
    if y0 >= y1 or x0 >= x1:
        return None
    dy = np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(cy)
    dx = np.arange(x0, x1, dtype=np.float32)[None, :] - np.float32(cx)
    c, s = np.float32(math.cos(theta)), np.float32(math.sin(theta))
    return slice(y0, y1), slice(x0, x1), dx * c + dy * s, -dx * s + dy * c


_ROOF_PALETTE = np.float32([[168, 74, 52], [104, 108, 118], [122, 86, 60], [176, 174, 168]])
_ROOF_KIND_P = (0.35, 0.25, 0.2, 0.2)  # terracotta, slate, brown, flat concrete
_CAR_PALETTE = np.float32([[228, 228, 222], [32, 32, 38], [162, 165, 172], [172, 32, 30], [36, 62, 140],
                           [78, 80, 84], [200, 170, 40]])
_TREE_GREENS = np.float32([[48, 92, 40], [38, 80, 46], [66, 104, 42]])


def _roof_colour(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, a: float, b: float, theta: float,
                 light: tuple[float, float], g: float) -> np.ndarray:
    """(h, w, 3) float32 roof colours at local coords ``u`` (along the ridge) / ``v`` (across)."""
    kind = int(rng.choice(4, p=_ROOF_KIND_P))
    base = _ROOF_PALETTE[kind] * np.float32(rng.uniform(0.88, 1.12)) * rng.uniform(0.96, 1.04, 3).astype(np.float32)
    speck = rng.random(u.shape, dtype=np.float32)
    av = np.abs(v)
    if kind == 3:  # flat roof: parapet rim, slightly mottled
        rim = np.minimum(a - np.abs(u), b - av) < 1.2 * g
        fac = np.where(rim, 0.72, 1.0) * (0.95 + 0.1 * speck)
    else:
        facing = np.sign(v) * (math.cos(theta) * light[0] - math.sin(theta) * light[1])  # +v axis . light
        pt = 2.4 * g
        course = np.floor(av / pt)
        lines = np.where((av % pt) < 0.35 * pt, 0.82, 1.0)
        joints = np.where(((u + 0.5 * pt * course) % (1.6 * pt)) < 0.3 * pt, 0.9, 1.0)
        ridge = np.where(av < 0.9 * g, 1.14, 1.0)
        eaves = np.where(b - av < 1.0 * g, 0.78, 1.0)
        fac = (1 + 0.22 * facing) * lines * joints * ridge * eaves * (0.95 + 0.1 * speck)
    return base[None, None, :] * fac[..., None].astype(np.float32)


def _car_colour(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, a: float, b: float, g: float) -> np.ndarray:
    """(h, w, 3) float32 vehicle colours: body, windscreen (front, +u) and rear window, darker sides."""
    body = _CAR_PALETTE[int(rng.integers(len(_CAR_PALETTE)))] * np.float32(rng.uniform(0.9, 1.1))
    out = np.broadcast_to(body, (*u.shape, 3)).copy()
    glass = ((u > 0.15 * a) & (u < 0.5 * a)) | ((u < -0.55 * a) & (u > -0.82 * a))
    out[glass & (np.abs(v) < 0.85 * b)] = (38, 48, 60)
    out[b - np.abs(v) < 0.45 * g] *= 0.8
    return out


def _shift(mask: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``mask`` translated by (dy, dx) px with zero fill (no wrap-around)."""
    out = np.zeros_like(mask)
    h, w = mask.shape
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[yd, xd] = mask[ys, xs]
    return out


# --- painting -------------------------------------------------------------------------------------------
def paint_map(
    seed: int, shape: tuple[int, int] = (768, 768), g: float = 1.0, params: MapParams | None = None
) -> AerialMap:
    """Paint the world map of ``seed``: (H_w, W_w) = ``shape``; lengths scaled by ``g`` (see the module doc)."""
    p = params or MapParams()
    shape = (int(shape[0]), int(shape[1]))
    h, w = shape
    density = h * w / (768.0 * g) ** 2
    sun = rng_for(seed, "aerial-sun").uniform(0, 2 * math.pi)
    shadow_dir = (math.sin(sun), math.cos(sun))  # (dy, dx) shadows fall along; light comes from the opposite side
    light = (-shadow_dir[0], -shadow_dir[1])

    sem = _stuff_layout(rng_for(seed, "aerial-stuff"), shape, g, p)
    roads = _roads(rng_for(seed, "aerial-roads"), shape, g, p)
    hw = roads.half_width
    road = roads.dist <= hw
    shoulder = ~road & (roads.dist <= hw + 2.5 * g)
    sem[shoulder & (sem != WATER)] = GROUND
    sem[road] = ROAD
    inst = np.zeros(shape, np.int32)
    obj = np.zeros((h, w, 3), np.float32)  # colours of roofs, trees, vehicles
    next_id = 1

    # roofs: mostly lined up along the roads, a few scattered
    rng = rng_for(seed, "aerial-roofs")
    blocked = (roads.dist <= hw + 3.0 * g) | (sem == WATER)
    occupied = np.zeros(shape, bool)
    inside_pts = np.flatnonzero((roads.py >= 0) & (roads.py < h) & (roads.px >= 0) & (roads.px < w))
    gap = 2.0 * g
    for _ in range(int(round(p.roof_attempts * density))):
        a, b = rng.uniform(*p.roof_half_length) * g, rng.uniform(*p.roof_half_depth) * g
        if rng.random() < 0.75 and len(inside_pts):
            k = int(inside_pts[rng.integers(len(inside_pts))])
            side = float(rng.choice([-1.0, 1.0]))
            off = roads.hw[k] + 3.0 * g + b + rng.uniform(0.5, 6.0) * g
            along = rng.uniform(-4, 4) * g
            cy = roads.py[k] + side * roads.tx[k] * off + roads.ty[k] * along
            cx = roads.px[k] - side * roads.ty[k] * off + roads.tx[k] * along
            theta = math.atan2(roads.ty[k], roads.tx[k]) + rng.normal(0, 0.05)
        else:
            cy, cx, theta = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(0, math.pi)
        st = _stamp(cy, cx, theta, math.hypot(a + gap, b + gap), shape)
        if st is None:
            continue
        sy, sx, u, v = st
        inside = (np.abs(u) <= a) & (np.abs(v) <= b)
        if inside.sum() < 6 or (blocked[sy, sx] & inside).any() or (occupied[sy, sx] & inside).any():
            continue
        colour = _roof_colour(rng, u, v, a, b, theta, light, g)
        sem[sy, sx][inside] = ROOF
        inst[sy, sx][inside] = next_id
        obj[sy, sx][inside] = colour[inside]
        occupied[sy, sx] |= (np.abs(u) <= a + gap) & (np.abs(v) <= b + gap)
        next_id += 1
    roofs = sem == ROOF

    # trees: round crowns in groves (never on roads or roofs)
    rng = rng_for(seed, "aerial-trees")
    grove = fractal(rng, shape, (70 * g, 20 * g), (1.0, 0.5))
    no_tree = (roads.dist <= hw + 1.0 * g) | roofs
    n_att = int(round(p.tree_attempts * density))
    cys, cxs = rng.uniform(0, h, n_att), rng.uniform(0, w, n_att)
    keep_u = rng.random(n_att)
    radii = rng.uniform(*p.tree_radius, n_att) * g
    greens = rng.integers(len(_TREE_GREENS), size=n_att)
    for cy, cx, ku, r, gi in zip(cys, cxs, keep_u, radii, greens):
        iy, ix = int(cy), int(cx)
        if sem[iy, ix] == WATER or not (grove[iy, ix] > 0.35 or ku < 0.06):
            continue
        st = _stamp(cy, cx, 0.0, r, shape)
        if st is None:
            continue
        sy, sx, u, v = st
        d2 = (u * u + v * v) / (r * r)
        inside = d2 <= 1.0
        if (no_tree[sy, sx] & inside).any():
            continue
        rim = 0.62 + 0.48 * (1.0 - d2)
        lit = 1.0 + 0.22 * (u * light[1] + v * light[0]) / r
        leaf = 0.82 + 0.36 * rng.random(u.shape, dtype=np.float32)
        colour = _TREE_GREENS[gi][None, None, :] * (rim * lit * leaf)[..., None]
        sem[sy, sx][inside] = TREE
        obj[sy, sx][inside] = colour[inside]

    # vehicles: in the lanes, aligned with the road (instance ids continue after the roofs)
    rng = rng_for(seed, "aerial-vehicles")
    vehicles = np.zeros(shape, bool)
    for r in np.unique(roads.road):
        pts = np.flatnonzero(roads.road == r)
        pos = rng.uniform(0, 30 * g)
        while True:
            pos += rng.exponential(p.vehicle_spacing * g) + 8 * g
            if pos >= len(pts):
                break
            k = int(pts[int(pos)])
            if not (0 <= roads.py[k] < h and 0 <= roads.px[k] < w):
                continue
            side = float(rng.choice([-1.0, 1.0]))
            off = side * roads.hw[k] * 0.5
            cy, cx = roads.py[k] + roads.tx[k] * off, roads.px[k] - roads.ty[k] * off
            theta = math.atan2(roads.ty[k], roads.tx[k]) + (0.0 if side > 0 else math.pi) + rng.normal(0, 0.03)
            a, b = rng.uniform(3.6, 5.0) * g, rng.uniform(1.6, 2.2) * g
            st = _stamp(cy, cx, theta, math.hypot(a, b) + 1.0, shape)
            if st is None:
                continue
            sy, sx, u, v = st
            inside = (np.abs(u) <= a) & (np.abs(v) <= b)
            halo = (np.abs(u) <= a + 1.5 * g) & (np.abs(v) <= b + 0.5 * g)
            if inside.sum() < 3 or (sem[sy, sx][inside] != ROAD).any() or (vehicles[sy, sx] & halo).any():
                continue
            colour = _car_colour(rng, u, v, a, b, g)
            sem[sy, sx][inside] = VEHICLE
            inst[sy, sx][inside] = next_id
            obj[sy, sx][inside] = colour[inside]
            vehicles[sy, sx] |= inside
            next_id += 1

    rgb = _stuff_textures(rng_for(seed, "aerial-textures"), sem, roads, g)
    objects = (sem == ROOF) | (sem == TREE) | (sem == VEHICLE)
    rgb[objects] = obj[objects]
    shadow = np.zeros(shape, bool)
    tall = (sem == ROOF) | (sem == TREE)
    for f in (0.5, 1.0):
        L = p.shadow_length * g * f
        shadow |= _shift(tall, int(round(shadow_dir[0] * L)), int(round(shadow_dir[1] * L)))
    L = 1.5 * g
    shadow |= _shift(sem == VEHICLE, int(round(shadow_dir[0] * L)), int(round(shadow_dir[1] * L)))
    shadow &= ~objects
    rgb[shadow] *= np.float32([0.58, 0.6, 0.68])
    image = np.clip(rgb + 0.5, 0, 255).astype(np.uint8)
    return AerialMap(int(seed), image, sem, inst, float(g))


def _stuff_textures(rng: np.random.Generator, sem: np.ndarray, roads: _Roads, g: float) -> np.ndarray:
    """(H, W, 3) float32 colours of the stuff classes (object pixels are left 0 and painted over later)."""
    h, w = sem.shape
    low = fractal(rng, (h, w), (40 * g, 12 * g), (1.0, 0.6))
    low2 = spectral_noise(rng, (h, w), 25 * g)
    parcels = spectral_noise(rng, (h, w), 110 * g)
    grain = rng.random((h, w), dtype=np.float32)
    grain2 = rng.random((h, w), dtype=np.float32)
    angles = rng.uniform(0, math.pi, 3).astype(np.float32)
    wave = rng.uniform(0, math.pi)
    rgb = np.zeros((h, w, 3), np.float32)

    # bare soil: patchy brown, coarse grain, pebbles
    m = sem == GROUND
    gr = grain[m][:, None]
    soil = (np.float32([150, 120, 84]) + low[m][:, None] * np.float32([16, 12, 8])) * (0.84 + 0.32 * gr)
    rgb[m] = np.where(grain2[m][:, None] > 0.985, soil * 1.3, soil)

    # grass: two greens, fine speckle, mowing stripes whose direction changes from parcel to parcel
    m = sem == GRASS
    ys, xs = np.nonzero(m)
    mix = smoothstep(0.5 + 0.35 * low2[m])[:, None]
    grass = np.float32([70, 116, 44]) * (1 - mix) + np.float32([104, 142, 60]) * mix
    ang = angles[np.digitize(parcels[m], [-0.45, 0.45])]
    stripes = np.sign(np.sin(2 * np.pi * (xs * np.cos(ang) + ys * np.sin(ang)) / (8 * g)))
    rgb[m] = grass * (1 + 0.07 * stripes)[:, None] * (0.86 + 0.28 * grain2[m])[:, None]

    # water: deeper (darker) away from the shore, ripples from a noise-warped sinusoid, sparse glints
    m = sem == WATER
    ys, xs = np.nonzero(m)
    depth = np.clip(ndimage.distance_transform_edt(m)[m] / (10 * g), 0, 1).astype(np.float32)[:, None]
    phase = 2 * np.pi * (xs * math.cos(wave) + ys * math.sin(wave)) / (6 * g) + 4.0 * low[m]
    ripple = np.sin(phase).astype(np.float32)[:, None]
    wat = (np.float32([62, 112, 118]) * (1 - depth) + np.float32([26, 62, 92]) * depth) * (1 + 0.07 * ripple)
    rgb[m] = np.where((ripple > 0.96) & (grain[m][:, None] > 0.7), wat + 40, wat)

    # asphalt with dashed centre lines and solid edge lines
    m = sem == ROAD
    near, dist = roads.near[m], roads.dist[m]
    hw = roads.hw[near]
    asphalt = np.float32([86, 86, 92]) * (0.9 + 0.2 * grain[m][:, None]) * (1 + 0.05 * low[m][:, None])
    dash = (dist <= 0.7 * g) & ((roads.s[near] % (10 * g)) < 5 * g) & (hw > 4 * g)
    edge = np.abs(dist - (hw - 1.2 * g)) <= 0.5 * g
    asphalt = np.where(dash[:, None], np.float32([232, 228, 205]), asphalt)
    rgb[m] = np.where(edge[:, None], np.float32([196, 196, 192]), asphalt)
    return rgb
