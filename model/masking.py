"""Inputs of the Y-model: normalization, MAE patch masking and the 4th (visible-pixel) channel."""

from __future__ import annotations

import torch

from model.config import ModelConfig


_STATS: dict[tuple[tuple[float, ...], tuple[float, ...], torch.device], tuple[torch.Tensor, torch.Tensor]] = {}


def _mean_std(cfg: ModelConfig, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, 3, 1, 1) mean and std on `device`, built once per (values, device) instead of on every call."""
    key = (tuple(cfg.pixel_mean), tuple(cfg.pixel_std), device)
    if key not in _STATS:
        _STATS[key] = (
            torch.tensor(cfg.pixel_mean, device=device).view(1, 3, 1, 1),
            torch.tensor(cfg.pixel_std, device=device).view(1, 3, 1, 1),
        )
    return _STATS[key]


def normalize(images: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """images: (B, 3, H, W) uint8 in [0, 255] or float in [0, 1] -> (B, 3, H, W) float, mean/std normalized."""
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    mean, std = _mean_std(cfg, x.device)
    return (x - mean) / std


def random_patch_mask(
    batch: int,
    height: int,
    width: int,
    patch: int,
    ratio: float,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Independent random patch mask per sample: (B, 1, H, W) float, 1 = visible, 0 = masked.

    In every sample exactly int(n * (1 - ratio)) of the n patch*patch cells stay visible and the rest are masked:
    MAE's `len_keep = int(L * (1 - mask_ratio))`, as the authors' release computes it (the last row/column of cells
    may be partial when H or W is not a multiple of `patch`).
    """
    gh, gw = -(-height // patch), -(-width // patch)
    n = gh * gw
    n_masked = n - int(n * (1 - ratio))
    scores = torch.rand(batch, n, generator=generator, device=generator.device if generator else device)
    order = scores.argsort(dim=1)
    visible = torch.ones(batch, n, device=scores.device)
    visible.scatter_(1, order[:, :n_masked], 0.0)
    grid = visible.view(batch, 1, gh, gw)
    full = grid.repeat_interleave(patch, dim=2).repeat_interleave(patch, dim=3)
    return full[:, :, :height, :width].to(device)


def with_flag(x: torch.Tensor, visible: torch.Tensor | None = None) -> torch.Tensor:
    """x: (B, 3, H, W) normalized; visible: (B, 1, H, W) or None -> (B, 4, H, W).

    Masked pixels are set to 0 (the mean colour in normalized space); the 4th channel is the visible flag.
    With `visible=None` (the main path) the 4th channel is all ones and nothing is masked.
    """
    if visible is None:
        return torch.cat([x, torch.ones_like(x[:, :1])], dim=1)
    return torch.cat([x * visible, visible], dim=1)


def reconstruction_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    visible: torch.Tensor,
    loss_on: str = "all",
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """MSE of g's output against the normalized image.

    pred, target: (B, 3, H, W); visible: (B, 1, H, W). `all` averages over every pixel (release);
    `masked` over masked pixels only (paper / MAE). valid: optional (B, 1, H, W), 0 on pixels that are not part of
    the image (padding of a scale-jittered sample): they count in neither average.
    """
    err = (pred.float() - target.float()).pow(2)
    if loss_on not in ("all", "masked"):
        raise ValueError(f"loss_on must be 'all' or 'masked', got {loss_on!r}")
    if loss_on == "all" and valid is None:
        return err.mean()
    weight = torch.ones_like(visible) if loss_on == "all" else 1.0 - visible
    if valid is not None:
        weight = weight * valid
    weight = weight.float().expand_as(err)
    return (err * weight).sum() / weight.sum().clamp_min(1.0)
