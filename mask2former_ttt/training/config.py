"""Joint-training configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field


class TrainConfig(BaseModel):
    """ℓ_m + recon_weight · ℓ_s on still images; AdamW with backbone lr multiplier, clip, poly schedule.
    `recon_weight` 0 trains the main task only (g stays untrained: `m2f-ttt prepare` trains it later, without labels)."""

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
    recon_weight: float = Field(1.0, ge=0.0)
    crop: tuple[int, int] | None = None
    amp: bool = True
    device: str = "auto"
    num_workers: int = 0
    checkpoint_every: int = 500
    log_every: int = 20
    seed: int = 0
    threads: int | None = None
    resume: bool = True


# What `m2f-ttt train` uses for the options left unset. From scratch: the bundled model's recipe (its model card and
# model/bundled/tiny-synth/train_config.json). From a pretrained checkpoint or Hugging Face directory: a gentle
# fine-tune (10x lower lr, the backbone at a tenth of it), so the pretrained weights are not washed out.
SCRATCH_RECIPE: dict[str, object] = {
    "recon_variant": "light", "steps": 1500, "warmup_steps": 50, "batch_size": 8, "lr": 1e-3,
    "backbone_lr_mult": 1.0, "grad_clip": 1.0, "checkpoint_every": 250,
}
FINETUNE_RECIPE: dict[str, object] = {
    "recon_variant": "release", "steps": 2000, "warmup_steps": 0, "batch_size": 8, "lr": 1e-4,
    "backbone_lr_mult": 0.1, "grad_clip": 0.01, "checkpoint_every": 500,
}


def recipe_for(init: str, given: dict[str, object]) -> dict[str, object]:
    """`given` (options the user set; None = unset) completed from the recipe for `init` (scratch | checkpoint | hf)."""
    recipe = SCRATCH_RECIPE if init == "scratch" else FINETUNE_RECIPE
    return {key: given.get(key) if given.get(key) is not None else default for key, default in recipe.items()}
