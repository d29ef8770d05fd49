"""Encoder f: transformers' SwinBackbone reading (B, 4, H, W) = normalized RGB + visible-pixel flag."""

from __future__ import annotations

import torch
from torch import nn
from transformers import SwinBackbone

from model.config import ModelConfig
from model.hf_config import swin_config
from model.stochastic_depth import use_stream_drop_path


class SwinEncoder(nn.Module):
    """f: (B, 4, H, W) -> 4 feature maps at strides 4, 8, 16, 32 with channels C, 2C, 4C, 8C."""

    def __init__(self, cfg: ModelConfig, backbone: SwinBackbone | None = None) -> None:
        super().__init__()
        self.backbone = backbone if backbone is not None else SwinBackbone(swin_config(cfg))
        use_stream_drop_path(self.backbone)  # drop-path per thread and stream, not per shared module

    @property
    def channels(self) -> list[int]:
        return list(self.backbone.channels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x: (B, 4, H, W) -> [(B, C, H/4, W/4), (B, 2C, H/8, W/8), (B, 4C, H/16, W/16), (B, 8C, H/32, W/32)]."""
        return list(self.backbone(x).feature_maps)
