"""Overlays of segmentation results on RGB frames: palette lookup + alpha blend + contours + instance labels.

Colours come from one table lookup (`lut[ids]`), the blend is one integer expression over the frame, and segment
contours are found by comparing each pixel with its right and lower neighbours; no Python loop runs over pixels.
Classes have one colour each (`palette.class_colors`: the dataset's, Cityscapes for street classes); things are
drawn in a per-id shade of their class colour (`palette.thing_shades`), so a legend of class colours holds for
every pixel. Each thing gets a label "class #id score" at the top-left of its box (a loop over the few things), and
frames of 240 rows or more a legend of their largest classes in the top-right corner; smaller frames get a legend
strip beside them (`legend_strip`), so every overlay explains its colours unless `legend="never"`.

Why not `supervision` (MaskAnnotator / PolygonAnnotator / LabelAnnotator): evaluated with supervision 0.31. Its
annotators take one boolean (H, W) mask per detection, so semantic label maps and panoptic stuff would first be
split into N masks (N·H·W memory and passes where this module does one lookup over an id map); without
`opencv-python` (not a dependency here, and a large wheel) it falls back to NumPy with a warning and drew 5 masks +
polygons + labels on a 320x180 frame in ~50 ms (warm; ~220 ms first call), against ~7 ms here with the labels, on
one busy core; and the webcam page draws its masks in the browser, so only the server's overlays could use it,
while the page and the server must share one colour rule.
What this module takes from it is the label style: name, track id and score on a filled box over each instance.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mask2former_ttt.outputs.legend_strip import check_legend_mode, legend_strip
from mask2former_ttt.outputs.masks import as_numpy, instance_id_map
from mask2former_ttt.outputs.palette import class_colors, thing_shades

MIN_LABEL_HEIGHT = 64  # frames lower than this get no instance labels (the text would cover the masks)
MIN_LEGEND_HEIGHT = 240  # frames lower than this get no legend
LEGEND_ROWS = 8  # the legend lists the largest classes of the frame, at most this many


def resize_rgb(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 -> (h, w, 3) uint8 for `size=(h, w)` (bilinear); returned unchanged if already that size."""
    if image.shape[:2] == tuple(size):
        return image
    return np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.BILINEAR))


def blend(image: np.ndarray, colors: np.ndarray, where: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """image, colors: (H, W, 3) uint8; where: (H, W) bool -> image with `colors` alpha-blended where `where`."""
    a = int(round(alpha * 256))
    mixed = ((image.astype(np.uint16) * (256 - a) + colors.astype(np.uint16) * a) >> 8).astype(np.uint8)
    return np.where(where[..., None], mixed, image)


def borders(ids: np.ndarray) -> np.ndarray:
    """(H, W) ids -> (H, W) bool, True where the right or lower neighbour has another id."""
    edge = np.zeros(ids.shape, dtype=bool)
    edge[:, :-1] |= ids[:, :-1] != ids[:, 1:]
    edge[:-1, :] |= ids[:-1, :] != ids[1:, :]
    return edge


def _things(kind: str, result: Any) -> list[tuple[int, int, float]]:
    """(segment id in the id map, class, score) of every thing of an instance / panoptic result."""
    if kind == "instance":
        classes, scores = as_numpy(result.classes).tolist(), as_numpy(result.scores).tolist()
        ids = as_numpy(result.ids).tolist() if getattr(result, "ids", None) is not None else range(1, len(classes) + 1)
        return [(int(i), int(c), float(s)) for i, c, s in zip(ids, classes, scores)]
    if kind == "panoptic":
        return [(int(s["id"]), int(s["category_id"]), float(s.get("score", 1.0)))
                for s in result.segments_info if s.get("isthing", False)]
    return []


def _ids_and_lut(kind: str, result: Any, colors: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids (H, W) int64, lut (n, 3) uint8, painted (H, W) bool) for a result of `kind`; colors: (K, 3) per class."""
    if kind == "semantic":
        ids = as_numpy(result.label_map).astype(np.int64)
        n = int(ids.max(initial=0)) + 1
        lut = colors[np.arange(n) % len(colors)] if len(colors) else np.zeros((n, 3), np.uint8)
        return ids, lut, np.ones(ids.shape, dtype=bool)
    if kind == "instance":
        ids = instance_id_map(result.masks, getattr(result, "ids", None))
    elif kind == "panoptic":
        ids = as_numpy(result.id_map).astype(np.int64)
    else:
        raise ValueError(f"unknown result kind {kind!r}")
    segs = _things(kind, result) if kind == "instance" else [
        (int(s["id"]), int(s["category_id"]), 0.0) for s in result.segments_info
    ]
    lut = np.zeros((max([int(ids.max(initial=0))] + [i for i, _, _ in segs]) + 1, 3), dtype=np.uint8)
    if segs:
        seg_ids = np.array([i for i, _, _ in segs])
        base = colors[np.array([c for _, c, _ in segs]) % len(colors)]
        things = {i for i, _, _ in _things(kind, result)}
        is_thing = np.array([i in things for i in seg_ids])
        lut[seg_ids] = np.where(is_thing[:, None], thing_shades(base, seg_ids), base)  # stuff: the class colour
    return ids, lut, ids > 0


def _draw_labels(out: np.ndarray, ids: np.ndarray, lut: np.ndarray, things: list[tuple[int, int, float]],
                 class_names: Sequence[str]) -> np.ndarray:
    """Write "name #id score" on a box of the thing's colour at the top-left of each thing's box; out: (H, W, 3)."""
    if not things or out.shape[0] < MIN_LABEL_HEIGHT:
        return out
    img = Image.fromarray(out)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=max(10, out.shape[0] // 30))
    for seg_id, cls, score in things:
        rows, cols = np.flatnonzero((ids == seg_id).any(axis=1)), np.flatnonzero((ids == seg_id).any(axis=0))
        if not len(rows):
            continue
        name = class_names[cls] if 0 <= cls < len(class_names) else f"class_{cls}"
        text = f"{name} #{seg_id} {score:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        w, h = right - left + 4, bottom - top + 2
        x = int(min(max(cols[0], 0), max(out.shape[1] - w, 0)))
        y = int(rows[0] - h if rows[0] >= h else rows[0])
        color = tuple(int(v) for v in lut[seg_id])
        dark = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2] < 140
        draw.rectangle((x, y, x + w, y + h), fill=color)
        draw.text((x + 2 - left, y + 1 - top), text, fill=(255, 255, 255) if dark else (0, 0, 0), font=font)
    return np.asarray(img)


def class_areas(kind: str, result: Any, ids: np.ndarray, num_classes: int) -> np.ndarray:
    """(num_classes,) int64: pixels of each class in the drawn id map `ids` (H, W) of a result of `kind`."""
    if kind == "semantic":
        cls_of = np.arange(int(ids.max(initial=0)) + 1)
    else:
        segs = _things(kind, result) if kind == "instance" else [
            (int(s["id"]), int(s["category_id"]), 0.0) for s in result.segments_info
        ]
        cls_of = np.full(max([int(ids.max(initial=0))] + [i for i, _, _ in segs]) + 1, -1, dtype=np.int64)
        for seg_id, cls, _ in segs:
            cls_of[seg_id] = cls
    classes = cls_of[ids.ravel()]
    classes = classes[(classes >= 0) & (classes < num_classes)]
    return np.bincount(classes, minlength=num_classes)[:num_classes]


def _draw_legend(out: np.ndarray, areas: np.ndarray, colors: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    """A legend of the frame's largest classes (swatch + name, by decreasing area) in its top-right corner."""
    present = [int(c) for c in np.argsort(-areas, kind="stable") if areas[c] > 0][:LEGEND_ROWS]
    if not present or out.shape[0] < MIN_LEGEND_HEIGHT:
        return out
    img = Image.fromarray(out)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=max(10, out.shape[0] // 40))
    row = font.size + 4
    width = max(draw.textlength(class_names[c], font=font) for c in present) + row + 10
    x0, y0 = out.shape[1] - int(width) - 4, 4
    draw.rectangle((x0, y0, x0 + width, y0 + row * len(present) + 4), fill=(16, 20, 24))
    for k, c in enumerate(present):
        y = y0 + 3 + k * row
        draw.rectangle((x0 + 4, y + 2, x0 + row, y + row - 2), fill=tuple(int(v) for v in colors[c]))
        draw.text((x0 + row + 5, y), class_names[c], fill=(230, 233, 236), font=font)
    return np.asarray(img)


def overlay(
    image: np.ndarray,
    kind: str,
    result: Any,
    num_classes: int = 0,
    alpha: float = 0.5,
    class_names: Sequence[str] | None = None,
    colors: Sequence[Sequence[int]] | None = None,
    *,
    legend: str = "auto",
    labels: bool = True,
    beside: bool = True,
) -> np.ndarray:
    """Draw a `semantic | instance | panoptic` result on `image` (H, W, 3) uint8 (resized to the result's size).

    Segments are filled with their colour at `alpha` and outlined at full opacity; things are labelled with class
    name, id and score (`labels`). `legend`: `auto` draws a legend of the frame's largest classes in frames at least
    `MIN_LEGEND_HEIGHT` high and a strip beside smaller ones (the result is then wider by
    `legend_strip.strip_width`); `always` puts the strip beside every frame (nothing covers it); `never` draws none.
    `beside=False` never adds a strip (the output keeps the result's size). `class_names` (default `class_0`, ...
    for `num_classes`) and `colors` ((K, 3) RGB, e.g. the checkpoint's `class_colors`) choose the colours
    (`palette.class_colors`).
    """
    check_legend_mode(legend)
    names = list(class_names) if class_names is not None else [f"class_{i}" for i in range(num_classes)]
    palette = class_colors(names, colors)
    ids, lut, painted = _ids_and_lut(kind, result, palette)
    image = resize_rgb(np.ascontiguousarray(image), ids.shape)
    fill = lut[ids]
    out = blend(image, fill, painted, alpha)
    edge = borders(ids) & painted
    out[edge] = fill[edge]
    if labels:
        out = _draw_labels(out, ids, lut, _things(kind, result), names)
    tall = out.shape[0] >= MIN_LEGEND_HEIGHT
    strip = beside and (legend == "always" or (legend == "auto" and not tall))
    if strip:
        areas = class_areas(kind, result, ids, len(names))
        out = np.concatenate([out, legend_strip(out.shape[0], areas, palette, names)], axis=1)
    elif legend != "never" and tall:
        out = _draw_legend(out, class_areas(kind, result, ids, len(names)), palette, names)
    return out
