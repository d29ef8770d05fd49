"""Self-supervised objectives a stream can minimise: MAE reconstruction (TTT-MAE), entropy (Tent),
masked self-training on confident pseudo-labels."""

from __future__ import annotations

from typing import Callable

import torch
from torch.nn import functional as F

from model.main_head import HeadOutput
from model.masking import random_patch_mask, reconstruction_loss, with_flag
from mask2former_ttt.ttt.config import TTTConfig

Forward = Callable[[torch.Tensor, str], HeadOutput | torch.Tensor]


def semantic_probs(out: HeadOutput) -> torch.Tensor:
    """Per-pixel class distribution from Mask2Former outputs: (B, K, h, w), summing to 1 over K."""
    cls = out.class_logits.float().softmax(-1)[..., :-1]
    masks = out.mask_logits.float().sigmoid()
    scores = torch.einsum("bqk,bqhw->bkhw", cls, masks)
    return scores / scores.sum(1, keepdim=True).clamp_min(1e-6)


def mae_loss(forward: Forward, x: torch.Tensor, cfg: TTTConfig, generator: torch.Generator) -> torch.Tensor:
    """x: (b, 3, h, w) normalized. Mask patches independently per sample, reconstruct with g∘f, MSE."""
    visible = random_patch_mask(x.shape[0], x.shape[2], x.shape[3], cfg.mask_patch, cfg.mask_ratio, generator)
    visible = visible.to(x.device)
    pred = forward(with_flag(x, visible), "reconstruct")
    return reconstruction_loss(pred, x, visible, cfg.loss_on)


def entropy_loss(forward: Forward, x: torch.Tensor, cfg: TTTConfig, generator: torch.Generator) -> torch.Tensor:
    """Tent: mean per-pixel entropy of h∘f's class distribution on the unmasked input."""
    p = semantic_probs(forward(with_flag(x), "predict"))
    return -(p * p.clamp_min(1e-8).log()).sum(1).mean()


def self_train_loss(
    forward: Forward, x: torch.Tensor, cfg: TTTConfig, generator: torch.Generator, threshold: float = 0.9
) -> torch.Tensor:
    """Self-training: pseudo-labels from the unmasked input where confidence > threshold; the student sees the
    input with `cfg.mask_ratio` of its patches masked and is trained with per-pixel NLL on those labels."""
    with torch.no_grad():
        conf, labels = semantic_probs(forward(with_flag(x), "predict")).max(1)
        labels[conf < threshold] = -100
    visible = random_patch_mask(x.shape[0], x.shape[2], x.shape[3], cfg.mask_patch, cfg.mask_ratio, generator)
    p = semantic_probs(forward(with_flag(x, visible.to(x.device)), "predict"))
    if (labels >= 0).sum() == 0:
        return p.sum() * 0.0
    return F.nll_loss(p.clamp_min(1e-8).log(), labels, ignore_index=-100)
