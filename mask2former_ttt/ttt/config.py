"""TTT configuration and presets (`release` = the authors' code, `default` = what wins on our validation videos)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class TTTConfig(BaseModel):
    """How one stream adapts. Defaults follow the authors' release unless a preset says otherwise."""

    window: int = Field(16, ge=1, description="explicit memory: frames kept in the sliding window (k)")
    batch_size: int = Field(32, ge=1, description="samples per TTT step (B)")
    micro_batch: int = Field(8, ge=1, description="samples per forward/backward; gradients are accumulated")
    sampling: Literal["with_replacement", "permutation"] = "permutation"
    steps_per_frame: int = Field(1, ge=0)
    optimizer: Literal["sgd", "adamw"] = "adamw"
    lr: float = 1e-4
    momentum: float = 0.9
    weight_decay: float = 0.05
    backbone_lr_mult: float = 0.1
    grad_clip: float | None = 0.01
    reset_optimizer_each_frame: bool = True
    reset_weights_each_frame: bool = False
    crop: tuple[int, int] | None = None
    mask_ratio: float = Field(0.85, ge=0.0, lt=1.0)
    mask_patch: int = 16
    loss_on: Literal["all", "masked"] = "all"
    drop_path: bool = True
    amp: bool = True
    compile: bool = Field(
        False,
        description="torch.compile the stream's forward (prediction and TTT step; static shapes). For CUDA: the "
        "first frames of each shape are slow while it compiles",
    )
    adapt_recon: bool = True
    # cost levers (docs/benchmark/cost_levers.md)
    adapt_scope: Literal["all", "late", "norms_biases"] = Field(
        "all",
        description="which of f's (and g's) tensors adapt: all of them; `late`: f's last half of stages, its final "
        "norms and g (backward stops at the first adapted stage); `norms_biases`: every 1-D tensor (norm affines "
        "and biases)",
    )
    every_n_frames: int = Field(
        1, ge=1, description="take the TTT step on every n-th frame only; the window still receives every frame"
    )
    pipelined: bool = Field(
        False,
        description="predict frame t with the weights adapted through frame t-1, then take frame t's step; the "
        "service sends the result before that step, so the step leaves the latency path",
    )
    # safety
    explode_factor: float = Field(10.0, gt=1.0, description="loss above this × its running mean triggers rollback")
    rollback_to: Literal["theta0", "last_good"] = "theta0"
    # safe adaptation guard (default preset)
    anchor: float = Field(0.0, ge=0.0, le=1.0, description="after each step pull weights this fraction toward θ0")
    loss_gate: float | None = Field(
        None, description="skip the step when ℓ_s < loss_gate × the model's clean reference loss"
    )
    shift_gate: tuple[float, float] | None = Field(
        None,
        description="(low, high): scale each frame's steps by clamp((s - low) / (high - low), 0, 1), s = the frame's "
        "shift score against the training images (ttt/shift_score.py); at 0 the step is skipped and the weights "
        "relax toward θ0 by `anchor`. Needs `input_stats_reference` in the checkpoint, else it is off",
    )


def release_preset() -> TTTConfig:
    """The authors' release: AdamW 1e-4, backbone ×0.1, wd 0.05, clip 0.01, optimizer re-created each frame,
    B = 32 in micro-batches of 8, k = 16, mask ratio 0.85, loss over all pixels."""
    return TTTConfig()


def default_preset() -> TTTConfig:
    """Chosen on the project's validation videos only (scripts/tune_default_preset.py, docs/benchmark): SGD lr 3e-3
    with momentum, persistent optimizer, masked-pixel loss, B = 4, k = 16, and the safe-adaptation guard: steps
    are scaled by the frame's shift score (0 below 2.5, full above 4; skipped frames relax toward θ0) and every
    update is pulled 1 % back toward θ0. On 3 val worlds the guard turned a clean-video loss of −3.4 mIoU into
    −0.2 while the drift/noise/fog gain went from +6.1 to +6.4 (an anchor alone: −2.0 with +6.1)."""
    return TTTConfig(
        window=16,
        batch_size=4,
        micro_batch=4,
        sampling="with_replacement",
        optimizer="sgd",
        lr=3e-3,
        momentum=0.9,
        weight_decay=0.0,
        backbone_lr_mult=1.0,
        grad_clip=1.0,
        reset_optimizer_each_frame=False,
        loss_on="masked",
        anchor=0.01,
        shift_gate=(2.5, 4.0),
    )


TTT_PRESETS = {"release": release_preset, "default": default_preset}


def ttt_preset(name: str, **overrides: object) -> TTTConfig:
    """A named preset with optional field overrides (validated)."""
    if name not in TTT_PRESETS:
        raise ValueError(f"unknown TTT preset {name!r}; choose one of {sorted(TTT_PRESETS)}")
    cfg = TTT_PRESETS[name]()
    return TTTConfig.model_validate({**cfg.model_dump(), **overrides}) if overrides else cfg
