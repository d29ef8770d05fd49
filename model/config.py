"""Model configuration: a pydantic description of the Y-model and its presets.

The Y-model is f (4-channel Swin encoder) -> {h (Mask2Former head), g (reconstruction decoder)}.
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, Field, model_validator

Task = Literal["semantic", "instance", "panoptic"]  # the one task vocabulary of the project
TASKS: tuple[str, ...] = get_args(Task)
ReconVariant = Literal["release", "light"]


class SwinSpec(BaseModel):
    """Encoder f: a Swin transformer reading 4 channels (RGB + visible-pixel flag)."""

    embed_dim: int = 96
    depths: list[int] = [2, 2, 18, 2]
    num_heads: list[int] = [3, 6, 12, 24]
    window_size: int = 7
    patch_size: int = 4
    mlp_ratio: float = 4.0
    drop_path_rate: float = 0.3
    in_channels: int = 4


class HeadSpec(BaseModel):
    """Main head h: Mask2Former pixel decoder + masked-attention transformer decoder."""

    hidden_dim: int = 256
    feature_size: int = 256
    mask_feature_size: int = 256
    encoder_layers: int = 6
    encoder_feedforward_dim: int = 1024
    decoder_layers: int = 10  # transformers counts the initial prediction: 10 -> 9 decoder layers
    num_attention_heads: int = 8
    dim_feedforward: int = 2048
    num_queries: int = 100
    train_num_points: int = 12544


class ReconSpec(BaseModel):
    """Reconstruction decoder g.

    `release`: a second Mask2Former head with 48 = 3*4*4 queries and no class embedding, pixel-shuffled.
    `light`: a small FPN/conv decoder on f's four maps.
    """

    variant: ReconVariant = "release"
    light_channels: int = 64


class MaskingSpec(BaseModel):
    """MAE-style masking for the reconstruction task."""

    patch_size: int = 16
    ratio: float = Field(0.85, ge=0.0, lt=1.0)
    loss_on: Literal["all", "masked"] = "all"


class ModelConfig(BaseModel):
    """Everything needed to build a Y-model; serialised next to checkpoints as JSON."""

    name: str = "swin-s"
    task: Task = "semantic"
    class_names: list[str] = Field(default_factory=lambda: [f"class_{i}" for i in range(19)])
    thing_class_ids: list[int] = Field(default_factory=list)
    class_colors: list[list[int]] | None = Field(
        None, description="RGB display colour per class (a dataset's meta.json colours); None: chosen by class name"
    )
    image_size: int = Field(512, description="working resolution: frames are scaled so their short side is this")
    max_size: int | None = Field(
        None,
        ge=32,
        description="cap on the long side at the working resolution (detectron2's ResizeShortestEdge max_size): the "
        "scale is min(image_size / short side, max_size / long side); None = no cap",
    )
    pixel_mean: list[float] = [0.485, 0.456, 0.406]
    pixel_std: list[float] = [0.229, 0.224, 0.225]
    swin: SwinSpec = SwinSpec()
    head: HeadSpec = HeadSpec()
    recon: ReconSpec = ReconSpec()
    masking: MaskingSpec = MaskingSpec()
    object_mask_threshold: float = 0.8
    overlap_threshold: float = 0.8
    recon_loss_reference: float | None = None  # typical ℓ_s on clean training data, written by joint training
    # {"mean": [5], "std": [5]} low-level statistics of the training images (mask2former_ttt.ttt.shift_score),
    # written by joint training or `m2f-ttt calibrate`; the safe-adaptation guard is off without it
    input_stats_reference: dict[str, list[float]] | None = None
    # {"mean", "std"} of the θ0 encoder's feature statistics over the training images (mask2former_ttt.ttt.
    # feature_stats), written by joint training or `m2f-ttt calibrate`; the guard's feature alignment needs it
    feature_stats_reference: dict[str, list] | None = None
    # {"median", "q_high"} of the θ0 model's mean per-pixel uncertainty (1 − max class probability) over the training
    # images (mask2former_ttt.ttt.confidence_shift), written by joint training or `m2f-ttt calibrate`
    confidence_reference: dict[str, float] | None = None
    recon_trained: bool | None = Field(
        None,
        description="whether g (the reconstruction decoder TTT steps go through) is trained: true after joint "
        "training, `m2f-ttt prepare` or a converted TTT-MAE checkpoint with its recon_head; false for a converted "
        "detectron2 / Hugging Face Mask2Former (g freshly initialised, TTT only when asked for explicitly); null: "
        "not recorded (checkpoints written before this field), taken as trained",
    )

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def recon_untrained(self) -> bool:
        """g is known to be freshly initialised (`recon_trained` false): TTT steps through it do not help."""
        return self.recon_trained is False

    @property
    def guard_calibrated(self) -> bool:
        """The safe-adaptation guard's three references are present (input, encoder-feature and confidence
        statistics, from joint training, `m2f-ttt calibrate` or `m2f-ttt prepare`)."""
        refs = (self.input_stats_reference, self.feature_stats_reference, self.confidence_reference)
        return all(r is not None for r in refs)

    @model_validator(mode="after")
    def _check(self) -> "ModelConfig":
        if len(self.swin.depths) != 4 or len(self.swin.num_heads) != 4:
            raise ValueError("swin.depths and swin.num_heads need 4 stages (strides 4, 8, 16, 32)")
        if self.head.feature_size % 32:
            raise ValueError("head.feature_size must be divisible by 32 (GroupNorm(32, C))")
        bad = [i for i in self.thing_class_ids if not 0 <= i < self.num_classes]
        if bad:
            raise ValueError(f"thing_class_ids out of range: {bad}")
        if self.class_colors is not None and len(self.class_colors) != self.num_classes:
            raise ValueError(f"{len(self.class_colors)} class_colors for {self.num_classes} classes")
        return self


def tiny_config(**overrides: object) -> ModelConfig:
    """About 1-2 M parameters; for tests and the CPU benchmark at 96-256 px."""
    cfg = ModelConfig(
        name="tiny",
        image_size=128,
        swin=SwinSpec(embed_dim=32, depths=[1, 1, 2, 1], num_heads=[1, 2, 4, 8], window_size=4, drop_path_rate=0.1),
        head=HeadSpec(
            hidden_dim=64,
            feature_size=64,
            mask_feature_size=64,
            encoder_layers=1,
            encoder_feedforward_dim=128,
            decoder_layers=4,
            num_attention_heads=4,
            dim_feedforward=128,
            num_queries=20,
            train_num_points=1024,
        ),
        recon=ReconSpec(variant="release"),
    )
    return cfg.model_copy(update=overrides) if overrides else cfg


def swin_s_config(**overrides: object) -> ModelConfig:
    """The paper's model: Swin-S encoder, 256-d Mask2Former head, 100 queries, 9 decoder layers."""
    cfg = ModelConfig(name="swin-s")
    return cfg.model_copy(update=overrides) if overrides else cfg


PRESETS = {"tiny": tiny_config, "swin-s": swin_s_config}


def preset(name: str, **overrides: object) -> ModelConfig:
    """Return a preset config by name (`tiny` or `swin-s`)."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name](**overrides)
