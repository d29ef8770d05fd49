"""Joint-training losses: ℓ = ℓ_m (Mask2Former set loss, transformers' Hungarian-matched implementation with
deep supervision) + recon_weight · ℓ_s (masked-image reconstruction MSE)."""

from __future__ import annotations

import torch
from torch import nn
from transformers.models.mask2former.modeling_mask2former import Mask2FormerLoss

from model.hf_config import mask2former_config
from model.main_head import HeadOutput
from model.masking import random_patch_mask, reconstruction_loss, with_flag
from model.ymodel import YModel


class SetLoss(nn.Module):
    """ℓ_m: CE (weight 2, no-object 0.1) + mask BCE (5) + dice (5) with point sampling, summed over all decoder layers."""

    def __init__(self, model: YModel) -> None:
        super().__init__()
        hf_cfg = mask2former_config(model.cfg)
        self.weights = {"loss_cross_entropy": hf_cfg.class_weight, "loss_mask": hf_cfg.mask_weight, "loss_dice": hf_cfg.dice_weight}
        self.criterion = Mask2FormerLoss(config=hf_cfg, weight_dict=self.weights)

    def forward(
        self, out: HeadOutput, mask_labels: list[torch.Tensor], class_labels: list[torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """out: h's outputs for B images; mask_labels[b]: (N_b, H, W) float; class_labels[b]: (N_b,) int64."""
        terms = self.criterion(
            masks_queries_logits=out.mask_logits.float(),
            class_queries_logits=out.class_logits.float(),
            mask_labels=mask_labels,
            class_labels=class_labels,
            auxiliary_predictions=[{k: v.float() for k, v in a.items()} for a in out.aux],
        )
        weighted = {k: v * next(w for key, w in self.weights.items() if key in k) for k, v in terms.items()}
        total = sum(weighted.values())
        return total, {k: float(v.detach()) for k, v in weighted.items()}


class JointLoss(nn.Module):
    """ℓ_m on the unmasked input through h∘f plus `recon_weight` · ℓ_s on an independently masked copy through g∘f.
    With `recon_weight` 0 (main-task-only training) g is neither run nor trained."""

    def __init__(self, model: YModel, recon_weight: float = 1.0) -> None:
        super().__init__()
        self.set_loss = SetLoss(model)
        self.recon_weight = recon_weight
        self.masking = model.cfg.masking

    def reconstruction(self, model: YModel, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """ℓ_s for x: (B, 3, H, W) normalized images."""
        visible = random_patch_mask(x.shape[0], x.shape[2], x.shape[3], self.masking.patch_size, self.masking.ratio, generator)
        visible = visible.to(x.device)
        return reconstruction_loss(model.reconstruct(with_flag(x, visible)), x, visible, self.masking.loss_on)

    def forward(
        self,
        model: YModel,
        x: torch.Tensor,
        mask_labels: list[torch.Tensor],
        class_labels: list[torch.Tensor],
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """x: (B, 3, H, W) normalized. Returns the total loss and its parts (`loss_main`, `loss_recon`, set terms)."""
        main, parts = self.set_loss(model.predict(x), mask_labels, class_labels)
        if not self.recon_weight:
            return main, {"loss_main": float(main.detach()), "loss_recon": 0.0, **parts}
        recon = self.reconstruction(model, x, generator)
        parts = {"loss_main": float(main.detach()), "loss_recon": float(recon.detach()), **parts}
        return main + self.recon_weight * recon, parts
