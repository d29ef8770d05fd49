"""Bring incoming frames to the model's working resolution."""

from __future__ import annotations

import torch
from torch.nn import functional as F

MULTIPLE = 32  # Swin's coarsest stride


def working_size(height: int, width: int, short_side: int, max_size: int | None = None) -> tuple[int, int]:
    """Scale so the short side is `short_side` unless that makes the long side exceed `max_size` (then the long side
    is `max_size`: detectron2's ResizeShortestEdge(short_side, max_size)), then round both sides to a multiple of 32
    (at least 32)."""
    scale = short_side / min(height, width)
    if max_size is not None:
        scale = min(scale, max_size / max(height, width))
    h = max(MULTIPLE, int(round(height * scale / MULTIPLE)) * MULTIPLE)
    w = max(MULTIPLE, int(round(width * scale / MULTIPLE)) * MULTIPLE)
    return h, w


def to_working_resolution(frame: torch.Tensor, short_side: int, max_size: int | None = None) -> torch.Tensor:
    """frame: (3, H, W) uint8 RGB -> (3, h, w) uint8 at the working resolution (`working_size`; antialiased
    bilinear)."""
    if frame.ndim != 3 or frame.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) RGB frame, got shape {tuple(frame.shape)}")
    if frame.dtype != torch.uint8:
        raise ValueError(f"expected a uint8 frame, got {frame.dtype}")
    h, w = working_size(frame.shape[1], frame.shape[2], short_side, max_size)
    if (h, w) == tuple(frame.shape[1:]):
        return frame
    out = F.interpolate(frame[None].float(), size=(h, w), mode="bilinear", antialias=True, align_corners=False)
    return out[0].round().clamp(0, 255).to(torch.uint8)
