"""The TTT view as a video (`m2f-ttt segment --ttt-view`): per frame, the masked input, g∘f's reconstruction and
the ℓ_s curve so far, side by side, in `ttt_view.mp4` (the webcam page draws the same three panels).

Frame layout, (h, 3·w, 3) uint8 for a working resolution (h, w): [masked input | reconstruction | ℓ_s curve].
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mask2former_ttt.outputs.mp4 import Mp4Writer
from mask2former_ttt.ttt.view import TTTView

TTT_VIEW_MP4 = "ttt_view.mp4"
CURVE_POINTS = 300  # the curve shows the last 300 losses
RAW, TREND = (79, 179, 255), (255, 180, 84)  # the page's colours: each step, running mean


def curve_panel(losses: Sequence[float], height: int, width: int) -> np.ndarray:
    """(height, width, 3) uint8: the ℓ_s values (thin) and their running mean (bold) scaled to their range, with
    "ℓ_s first → now" written at the top (the running mean's first and last values)."""
    img = Image.new("RGB", (width, height), (0, 0, 0))
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=max(9, height // 12))
    pts = [v for v in losses[-CURVE_POINTS:] if np.isfinite(v)]
    if pts:
        mean, trend = pts[0], []
        for v in pts:
            mean = 0.85 * mean + 0.15 * v
            trend.append(mean)
        lo, hi = min(pts), max(pts)
        span, pad, top = (hi - lo) or 1.0, 4, height // 6
        n = max(len(pts) - 1, 1)
        xy = lambda k, v: (pad + k * (width - 2 * pad) / n, top + (1 - (v - lo) / span) * (height - top - pad))  # noqa: E731
        if len(pts) > 1:
            draw.line([xy(k, v) for k, v in enumerate(pts)], fill=RAW, width=1)
            draw.line([xy(k, v) for k, v in enumerate(trend)], fill=TREND, width=2)
        draw.text((pad, 2), f"l_s {trend[0]:.3f} -> {trend[-1]:.3f} ({len(pts)} steps)", fill=(230, 233, 236), font=font)
    return np.asarray(img)


def compose(view: TTTView, losses: Sequence[float]) -> np.ndarray:
    """view's (h, w, 3) images + the ℓ_s history -> (h, 3w, 3) uint8 [masked | reconstruction | curve]."""
    h, w = view.masked.shape[:2]
    return np.concatenate([view.masked, view.reconstruction, curve_panel(losses, h, w)], axis=1)


class TTTViewWriter:
    """Writes `compose(view, losses)` frames to an H.264 MP4; `write(view, loss)` adds the step's ℓ_s (None: no
    step on that frame) to the curve first."""

    def __init__(self, path: str | Path, fps: Fraction | float = 25) -> None:
        self._mp4 = Mp4Writer(path, fps=fps)
        self.losses: list[float] = []

    def write(self, view: TTTView, loss: float | None) -> None:
        if loss is not None:
            self.losses.append(float(loss))
        self._mp4.write(compose(view, self.losses))

    def close(self) -> None:
        self._mp4.close()
