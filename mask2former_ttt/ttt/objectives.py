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


def mae_loss(
    forward: Forward, x: torch.Tensor, cfg: TTTConfig, generator: torch.Generator, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """x: (b, 3, h, w) normalized. Mask patches independently per sample, reconstruct with g∘f, MSE.
    valid: (b, 1, h, w), 0 on padding (a jittered sample smaller than its crop): fed as masked, not in the loss."""
    visible = random_patch_mask(x.shape[0], x.shape[2], x.shape[3], cfg.mask_patch, cfg.mask_ratio, generator)
    visible = visible.to(x.device)
    if valid is not None:
        visible = visible * valid
    pred = forward(with_flag(x, visible), "reconstruct")
    return reconstruction_loss(pred, x, visible, cfg.loss_on, valid)


def _at(valid: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    """The valid mask (b, 1, H, W) at the resolution of `like` (b, K, h, w) (nearest), or None."""
    return None if valid is None else F.interpolate(valid.float(), size=like.shape[-2:], mode="nearest")


def entropy_loss(
    forward: Forward, x: torch.Tensor, cfg: TTTConfig, generator: torch.Generator, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Tent: mean per-pixel entropy of h∘f's class distribution on the unmasked input (valid pixels only)."""
    p = semantic_probs(forward(with_flag(x, valid), "predict"))
    entropy = -(p * p.clamp_min(1e-8).log()).sum(1, keepdim=True)
    weight = _at(valid, p)
    return entropy.mean() if weight is None else (entropy * weight).sum() / weight.sum().clamp_min(1.0)


def self_train_loss(
    forward: Forward,
    x: torch.Tensor,
    cfg: TTTConfig,
    generator: torch.Generator,
    threshold: float = 0.9,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Self-training: pseudo-labels from the unmasked input where confidence > threshold; the student sees the
    input with `cfg.mask_ratio` of its patches masked and is trained with per-pixel NLL on those labels (padding,
    `valid` = 0, gets no label)."""
    with torch.no_grad():
        probs = semantic_probs(forward(with_flag(x, valid), "predict"))
        conf, labels = probs.max(1)
        labels[conf < threshold] = -100
        weight = _at(valid, probs)
        if weight is not None:
            labels[weight[:, 0] < 0.5] = -100
    visible = random_patch_mask(x.shape[0], x.shape[2], x.shape[3], cfg.mask_patch, cfg.mask_ratio, generator)
    visible = visible.to(x.device) if valid is None else visible.to(x.device) * valid
    p = semantic_probs(forward(with_flag(x, visible), "predict"))
    if (labels >= 0).sum() == 0:
        return p.sum() * 0.0
    return F.nll_loss(p.clamp_min(1e-8).log(), labels, ignore_index=-100)
