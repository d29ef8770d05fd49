"""Self-supervised objectives a stream can minimise: MAE reconstruction (TTT-MAE), entropy (Tent),
masked self-training on confident pseudo-labels."""

from __future__ import annotations

from typing import Callable

import torch
from torch.nn import functional as F

from model.main_head import HeadOutput
from model.masking import random_patch_mask, reconstruction_loss, with_flag
from mask2former_ttt.ttt.config import TTTConfig
from mask2former_ttt.ttt.feature_align import FeatureAlignment

MASK_PATCH = 16  # side of the square patches the MAE mask hides or shows, in pixels (the authors' setting)

Forward = Callable[[torch.Tensor, str], HeadOutput | torch.Tensor]


def semantic_probs(out: HeadOutput) -> torch.Tensor:
    """Per-pixel class distribution from Mask2Former outputs: (B, K, h, w), summing to 1 over K."""
    cls = out.class_logits.float().softmax(-1)[..., :-1]
    masks = out.mask_logits.float().sigmoid()
    scores = torch.einsum("bqk,bqhw->bkhw", cls, masks)
    return scores / scores.sum(1, keepdim=True).clamp_min(1e-6)


class MAEObjective:
    """TTT-MAE's objective: mask patches independently per sample, reconstruct with g∘f, MSE; with `alignment`,
    plus the feature-alignment term on f's maps of the unmasked samples (ttt/feature_align.py). The serial step
    calls it whole (it draws the patch mask from the stream's generator); the batched step (ttt/cross_stream.py)
    draws the masks beforehand and calls `given_mask` inside its vmapped gradient."""

    def __init__(self, alignment: FeatureAlignment | None = None) -> None:
        self.alignment = alignment

    def __call__(
        self, forward: Forward, x: torch.Tensor, cfg: TTTConfig, generator: torch.Generator,
        valid: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x: (b, 3, h, w) normalized. valid: (b, 1, h, w), 0 on padding (a jittered sample smaller than its crop):
        fed as masked, not in the loss."""
        visible = draw_visible(x, cfg, generator)
        if valid is not None:
            visible = visible * valid
        return self.given_mask(forward, x, visible, cfg, valid)

    def given_mask(
        self, forward: Forward, x: torch.Tensor, visible: torch.Tensor, cfg: TTTConfig,
        valid: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The loss of x (b, 3, h, w) with patch mask `visible` (b, 1, h, w; 1 = shown)."""
        pred = forward(with_flag(x, visible), "reconstruct")
        loss = reconstruction_loss(pred, x, visible, cfg.loss_on, valid)
        if self.alignment is not None:
            loss = loss + self.alignment.loss(forward(with_flag(x, valid), "encode"))
        return loss


def draw_visible(x: torch.Tensor, cfg: TTTConfig, generator: torch.Generator) -> torch.Tensor:
    """x: (b, 3, h, w) -> (b, 1, h, w) on x's device: 1 on the patches shown, `cfg.mask_ratio` of them hidden."""
    return random_patch_mask(x.shape[0], x.shape[2], x.shape[3], MASK_PATCH, cfg.mask_ratio, generator).to(x.device)


mae_loss = MAEObjective()  # without feature alignment (the paper's objective)


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
    visible = draw_visible(x, cfg, generator)
    visible = visible if valid is None else visible * valid
    p = semantic_probs(forward(with_flag(x, visible), "predict"))
    if (labels >= 0).sum() == 0:
        return p.sum() * 0.0
    return F.nll_loss(p.clamp_min(1e-8).log(), labels, ignore_index=-100)
