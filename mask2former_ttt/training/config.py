"""Joint-training configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field


class TrainConfig(BaseModel):
    """ℓ_m + recon_weight · ℓ_s on still images; AdamW with backbone lr multiplier, clip, poly schedule."""

    data_root: Path
    dataset_format: Literal["auto", "coco", "cityscapes", "kitti-step"] = "auto"
    resize: tuple[int, int] | None = None
    split: str = "train"
    out_dir: Path = Path("runs/train")
    init: Literal["scratch", "checkpoint", "hf"] = "scratch"
    init_path: Path | None = None
    model_preset: str = "tiny"
    recon_variant: Literal["release", "light"] = "release"
    steps: int = Field(2000, ge=1)
    batch_size: int = Field(8, ge=1)
    lr: float = 1e-4
    backbone_lr_mult: float = 0.1
    weight_decay: float = 0.05
    grad_clip: float | None = 0.01
    poly_power: float = 0.9
    warmup_steps: int = 0
    recon_weight: float = 1.0
    crop: tuple[int, int] | None = None
    amp: bool = True
    device: str = "auto"
    num_workers: int = 0
    checkpoint_every: int = 500
    log_every: int = 20
    seed: int = 0
    threads: int | None = None
    resume: bool = True
