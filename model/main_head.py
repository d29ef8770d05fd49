"""Main head h: Mask2Former's pixel decoder + masked-attention transformer decoder + class predictor."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers.models.mask2former.modeling_mask2former import (
    Mask2FormerPixelDecoder,
    Mask2FormerTransformerModule,
)


@dataclass
class HeadOutput:
    """Per-layer predictions of h.

    class_logits: (B, Q, K+1) of the last layer; mask_logits: (B, Q, H/4, W/4) of the last layer;
    aux: earlier layers' {"class_queries_logits", "masks_queries_logits"} for deep supervision.
    """

    class_logits: torch.Tensor
    mask_logits: torch.Tensor
    aux: list[dict[str, torch.Tensor]]


class Mask2FormerHead(nn.Module):
    """h: reads f's 4 maps, returns class and mask logits for Q queries.

    The modules are transformers' own (taken from a built `Mask2FormerForUniversalSegmentation`),
    so for the same weights the outputs equal that model's.
    """

    def __init__(
        self,
        pixel_decoder: Mask2FormerPixelDecoder,
        transformer: Mask2FormerTransformerModule,
        class_predictor: nn.Linear | None,
    ) -> None:
        super().__init__()
        self.pixel_decoder = pixel_decoder
        self.transformer = transformer
        self.class_predictor = class_predictor

    def decode(self, features: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """features: f's maps -> (per-layer query states (Q, B, D) ..., per-layer mask logits (B, Q, H/4, W/4) ...)."""
        pix = self.pixel_decoder(features, output_hidden_states=False)
        out = self.transformer(
            multi_scale_features=pix.multi_scale_features,
            mask_features=pix.mask_features,
            output_hidden_states=True,
        )
        return list(out.intermediate_hidden_states), list(out.masks_queries_logits)

    def forward(self, features: list[torch.Tensor]) -> HeadOutput:
        states, masks = self.decode(features)
        if self.class_predictor is None:
            raise RuntimeError("this head has no class predictor (it is a reconstruction head)")
        classes = [self.class_predictor(s.transpose(0, 1)) for s in states]
        aux = [{"class_queries_logits": c, "masks_queries_logits": m} for c, m in zip(classes[:-1], masks[:-1])]
        return HeadOutput(class_logits=classes[-1], mask_logits=masks[-1], aux=aux)
