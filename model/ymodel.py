"""The Y-model: f (4-channel Swin) feeding h (Mask2Former head) and g (reconstruction decoder)."""

from __future__ import annotations

import torch
from torch import nn
from transformers import Mask2FormerForUniversalSegmentation, Mask2FormerModel

from model.config import ModelConfig
from model.encoder import SwinEncoder
from model.hf_config import mask2former_config
from model.main_head import HeadOutput, Mask2FormerHead
from model.masking import with_flag
from model.recon_decoder import RECON_QUERIES, LightReconDecoder, ReleaseReconDecoder

ENCODER_PREFIX = "encoder."
HEAD_PREFIX = "head."
RECON_PREFIX = "recon."


class YModel(nn.Module):
    """encoder = f, head = h, recon = g. Inputs are normalized (B, 3, H, W) images or (B, 4, H, W) tensors."""

    def __init__(self, cfg: ModelConfig, encoder: SwinEncoder, head: Mask2FormerHead, recon: nn.Module) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = encoder
        self.head = head
        self.recon = recon

    def encode(self, x4: torch.Tensor) -> list[torch.Tensor]:
        """f: (B, 4, H, W) -> 4 maps at strides 4/8/16/32."""
        return self.encoder(x4)

    def predict(self, x: torch.Tensor) -> HeadOutput:
        """h∘f. x: (B, 3, H, W) normalized (4th channel set to ones) or (B, 4, H, W)."""
        x4 = with_flag(x) if x.shape[1] == 3 else x
        return self.head(self.encode(x4))

    def reconstruct(self, x4: torch.Tensor) -> torch.Tensor:
        """g∘f. x4: (B, 4, H, W) masked input -> (B, 3, H, W) normalized pixels."""
        return self.recon(self.encode(x4))

    def forward(self, x: torch.Tensor, mode: str = "predict") -> HeadOutput | torch.Tensor | list[torch.Tensor]:
        """Dispatch for `torch.func.functional_call`: mode `predict` (h∘f), `reconstruct` (g∘f) or `encode` (f's
        four maps; x: (B, 4, H, W))."""
        if mode == "predict":
            return self.predict(x)
        if mode == "reconstruct":
            return self.reconstruct(x)
        if mode == "encode":
            return self.encode(x)
        raise ValueError(f"mode must be 'predict', 'reconstruct' or 'encode', got {mode!r}")


def _hf_main(cfg: ModelConfig) -> Mask2FormerForUniversalSegmentation:
    return Mask2FormerForUniversalSegmentation(mask2former_config(cfg))


def head_from_hf(hf: Mask2FormerForUniversalSegmentation) -> Mask2FormerHead:
    """Take h's modules out of a transformers Mask2Former model (shared, not copied)."""
    return Mask2FormerHead(hf.model.pixel_level_module.decoder, hf.model.transformer_module, hf.class_predictor)


def build_recon(cfg: ModelConfig, encoder_channels: list[int]) -> nn.Module:
    """g for `cfg.recon.variant`, freshly initialised."""
    if cfg.recon.variant == "light":
        return LightReconDecoder(encoder_channels, cfg.recon.light_channels)
    hf = Mask2FormerModel(mask2former_config(cfg, num_queries=RECON_QUERIES))
    head = Mask2FormerHead(hf.pixel_level_module.decoder, hf.transformer_module, None)
    return ReleaseReconDecoder(head)


def build_model(cfg: ModelConfig, hf: Mask2FormerForUniversalSegmentation | None = None) -> YModel:
    """Build a Y-model; with `hf`, f and h are that model's modules (its backbone must read 4 channels)."""
    hf = hf if hf is not None else _hf_main(cfg)
    encoder = SwinEncoder(cfg, hf.model.pixel_level_module.encoder)
    return YModel(cfg, encoder, head_from_hf(hf), build_recon(cfg, encoder.channels))


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def parameter_counts(model: YModel) -> dict[str, int]:
    """Parameter counts of f, h, g and the total."""
    f, h, g = (count_parameters(m) for m in (model.encoder, model.head, model.recon))
    return {"f": f, "h": h, "g": g, "f+h": f + h, "total": f + h + g}
