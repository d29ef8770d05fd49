"""The TTT view: what the self-supervised task looks like on one frame (masked input, g∘f's reconstruction, ℓ_s).

On real footage the bundled demo model's masks mean little, but the masked-image reconstruction is meaningful on
any footage and improves as a stream adapts: this is what the webcam page shows next to the masks.

`reconstruction_view` is a separate no-grad forward through f and g with the stream's current weights, on the
frame at the working resolution with a fixed-seed MAE patch mask. It is only run when a client asks (WS `start`
option `ttt_view`), never inside the TTT step: the step's tensors, RNG and timings are untouched.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from model.device import to_device
from model.masking import normalize, random_patch_mask, reconstruction_loss, with_flag
from mask2former_ttt.ttt.frames import to_working_resolution
from mask2former_ttt.ttt.objectives import MASK_PATCH
from mask2former_ttt.ttt.protocol import Adapter

log = logging.getLogger(__name__)
MASKED_GREY = 64  # masked patches are drawn dark grey in the masked input


@dataclass
class TTTView:
    """masked: (h, w, 3) uint8, the frame with the masked patches greyed out; reconstruction: (h, w, 3) uint8,
    g∘f's output on that input; loss: ℓ_s of this reconstruction (MSE in normalized space, the step's `loss_on`)."""

    masked: np.ndarray
    reconstruction: np.ndarray
    loss: float


def _to_rgb(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> np.ndarray:
    """x: (1, 3, h, w) normalized float -> (h, w, 3) uint8 RGB."""
    rgb = (x.float() * std + mean).clamp(0, 1) * 255
    return rgb[0].round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


@torch.no_grad()
def reconstruction_view(adapter: Adapter, frame: torch.Tensor, seed: int = 0) -> TTTView:
    """frame: (3, H, W) uint8 RGB -> the TTT view at the model's working resolution (h, w).

    The patch mask uses the stream's patch size and `mask_ratio` and its own generator seeded with `seed` (the
    stream's generator is not drawn from). Methods without a reconstruction forward (no `forward`) use the shared
    model's weights θ0.
    """
    model = adapter.model
    cfg = model.cfg
    ttt_cfg = getattr(adapter, "cfg", None)
    patch = MASK_PATCH if ttt_cfg is not None else cfg.masking.patch_size
    ratio = getattr(ttt_cfg, "mask_ratio", cfg.masking.ratio)
    loss_on = getattr(ttt_cfg, "loss_on", cfg.masking.loss_on)
    device = next(model.parameters()).device
    x = to_working_resolution(to_device(frame, device), cfg.image_size, cfg.max_size)
    xn = normalize(x[None], cfg)  # (1, 3, h, w)
    visible = random_patch_mask(1, x.shape[1], x.shape[2], patch, ratio, torch.Generator().manual_seed(seed))
    visible = visible.to(device)  # (1, 1, h, w), 1 = visible
    forward = getattr(adapter, "forward", None)
    inp = with_flag(xn, visible)
    pred = forward(inp, "reconstruct") if forward is not None else model(inp, mode="reconstruct")
    loss = float(reconstruction_loss(pred, xn, visible, loss_on))
    mean = torch.tensor(cfg.pixel_mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(cfg.pixel_std, device=device).view(1, 3, 1, 1)
    masked = x.permute(1, 2, 0).cpu().numpy().copy()
    masked[visible[0, 0].cpu().numpy() < 0.5] = MASKED_GREY
    return TTTView(masked=masked, reconstruction=_to_rgb(pred, mean, std), loss=loss)


def scheduled_view(adapter: Adapter, frame: torch.Tensor, index: int, every: int) -> TTTView | None:
    """The TTT view of frame number `index` ((3, H, W) uint8) when a client asked for one every `every` frames
    (index 0, every, 2·every, ...), else None (`every` = 0: never, and nothing is computed). One patch mask per
    stream (seed 0), so the views' losses are comparable; a failure is logged and costs the view, not the frame."""
    if every <= 0 or index % every:
        return None
    try:
        return reconstruction_view(adapter, frame)
    except Exception:  # noqa: BLE001 - the view is a debugging aid
        log.exception("TTT view failed on frame %d", index)
        return None
