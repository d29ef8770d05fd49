"""The legend strip: a column beside a frame too small for an in-frame legend, listing the frame's classes.

Its width depends only on the class names (the widest name at a fixed font size), so every frame of a video gets
the same strip and the video's size stays constant: the frame's width plus `strip_width(names)`. Rows list the
frame's classes by decreasing area (a swatch of the class colour, then the name), as many as fit its height.
"""

from __future__ import annotations

from typing import Literal, Sequence, get_args

import numpy as np
from PIL import Image, ImageDraw, ImageFont

LegendMode = Literal["auto", "always", "never"]
LEGEND_MODES: tuple[str, ...] = get_args(LegendMode)
STRIP_FONT_SIZE = 10
STRIP_ROW = STRIP_FONT_SIZE + 4  # pixels per row
STRIP_BACKGROUND = (16, 20, 24)
STRIP_TEXT = (230, 233, 236)


def check_legend_mode(mode: str) -> str:
    """`mode` if it is a legend mode; ValueError naming the choices otherwise."""
    if mode not in LEGEND_MODES:
        raise ValueError(f"legend must be one of {', '.join(LEGEND_MODES)}, got {mode!r}")
    return mode


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=STRIP_FONT_SIZE)


def strip_width(class_names: Sequence[str]) -> int:
    """The strip's width in pixels for these class names (even, so that the frame's parity is kept)."""
    font = _font()
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text = max((draw.textlength(name, font=font) for name in class_names), default=0.0)
    width = int(np.ceil(text)) + STRIP_ROW + 12
    return width + width % 2


def legend_strip(
    height: int, areas: np.ndarray, colors: np.ndarray, class_names: Sequence[str]
) -> np.ndarray:
    """(height, strip_width(class_names), 3) uint8: the classes with a non-zero `areas[c]`, largest first, each as
    a swatch of `colors[c]` (RGB) and its name, as many rows as fit."""
    strip = np.empty((height, strip_width(class_names), 3), np.uint8)
    strip[:] = STRIP_BACKGROUND
    rows = max(1, (height - 4) // STRIP_ROW)
    present = [int(c) for c in np.argsort(-areas, kind="stable") if areas[c] > 0][:rows]
    if not present:
        return strip
    img = Image.fromarray(strip)
    draw = ImageDraw.Draw(img)
    font = _font()
    for k, c in enumerate(present):
        y = 2 + k * STRIP_ROW
        draw.rectangle((4, y + 2, 4 + STRIP_ROW - 4, y + STRIP_ROW - 2), fill=tuple(int(v) for v in colors[c]))
        draw.text((STRIP_ROW + 6, y + 1), class_names[c], fill=STRIP_TEXT, font=font)
    return np.asarray(img)
