"""Reconstruction decoder g, in two variants behind `ModelConfig.recon.variant`.

- `release`: a second Mask2Former head with 48 = 3*4*4 queries and no class embedding. The dot product of each
  query embedding with the stride-4 mask features gives (B, 48, H/4, W/4), pixel-shuffled to (B, 3, H, W).
- `light`: a small FPN on f's maps, upsampled to stride 4 and pixel-shuffled the same way.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from model.main_head import Mask2FormerHead

SHUFFLE = 4  # mask features live at stride 4
RECON_QUERIES = 3 * SHUFFLE * SHUFFLE


class ReleaseReconDecoder(nn.Module):
    """g (release): Mask2Former head with 48 queries -> (B, 3, H, W) normalized pixels."""

    def __init__(self, head: Mask2FormerHead) -> None:
        super().__init__()
        if head.class_predictor is not None:
            raise ValueError("the reconstruction head has no class predictor")
        self.head = head

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        _, masks = self.head.decode(features)
        return F.pixel_shuffle(masks[-1], SHUFFLE)


class LightReconDecoder(nn.Module):
    """g (light): FPN over the 4 maps -> 3x3 conv -> 48 channels at stride 4 -> pixel shuffle -> (B, 3, H, W)."""

    def __init__(self, in_channels: list[int], width: int = 64) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in in_channels)
        self.smooth = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.GELU())
        self.out = nn.Conv2d(width, RECON_QUERIES, 3, padding=1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = self.lateral[-1](features[-1])
        for lateral, feat in zip(reversed(self.lateral[:-1]), reversed(features[:-1])):
            x = lateral(feat) + F.interpolate(x, size=feat.shape[-2:], mode="bilinear", align_corners=False)
        return F.pixel_shuffle(self.out(self.smooth(x)), SHUFFLE)
