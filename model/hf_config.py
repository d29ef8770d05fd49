"""Translate the project's ModelConfig into transformers' Swin / Mask2Former configs."""

from __future__ import annotations

from transformers import Mask2FormerConfig, SwinConfig

from model.config import ModelConfig


def swin_config(cfg: ModelConfig) -> SwinConfig:
    """SwinConfig for f with 4 input channels and all four stages as outputs (strides 4, 8, 16, 32)."""
    s = cfg.swin
    return SwinConfig(
        image_size=cfg.image_size,
        patch_size=s.patch_size,
        num_channels=s.in_channels,
        embed_dim=s.embed_dim,
        depths=list(s.depths),
        num_heads=list(s.num_heads),
        window_size=s.window_size,
        mlp_ratio=s.mlp_ratio,
        drop_path_rate=s.drop_path_rate,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )


def mask2former_config(cfg: ModelConfig, num_queries: int | None = None, num_labels: int | None = None) -> Mask2FormerConfig:
    """Mask2FormerConfig for h (or, with `num_queries=48`, for the release variant of g)."""
    h = cfg.head
    return Mask2FormerConfig(
        backbone_config=swin_config(cfg),
        feature_size=h.feature_size,
        mask_feature_size=h.mask_feature_size,
        hidden_dim=h.hidden_dim,
        encoder_feedforward_dim=h.encoder_feedforward_dim,
        encoder_layers=h.encoder_layers,
        decoder_layers=h.decoder_layers,
        num_attention_heads=h.num_attention_heads,
        dim_feedforward=h.dim_feedforward,
        num_queries=num_queries if num_queries is not None else h.num_queries,
        num_labels=num_labels if num_labels is not None else cfg.num_classes,
        train_num_points=h.train_num_points,
        use_auxiliary_loss=True,
    )
