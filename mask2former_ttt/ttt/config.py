"""TTT configuration and presets: `release` = the authors' code; `full`, `default` and `fast` = points of the
cost/quality frontier measured on our validation videos (docs/benchmark/cost_levers.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Schedule = Literal["sync", "pipelined", "async"]  # TTTConfig.schedule


class GuardConfig(BaseModel):
    """The safe-adaptation guard's settings (ttt/guard.py). Return detection is always on: after
    `guard.RETURN_FRAMES` closed frames in a row the stream counts as back on the training domain."""

    model_config = ConfigDict(extra="forbid")  # a misspelt or removed field is an error, not silently ignored

    shift_gate: tuple[float, float] = Field(
        (2.5, 4.0),
        description="(low, high): each frame's steps are scaled by clamp((s - low) / (high - low), 0, 1), s = the "
        "frame's pixel shift score against the training images (largest |z| of five statistics, "
        "ttt/shift_score.py); at 0 the step is skipped, the weights relax toward θ0 and the frame is predicted by θ0. "
        "Needs `input_stats_reference` in the checkpoint (`m2f-ttt calibrate`), else every frame steps in full",
    )
    confidence_gate: tuple[float, float] | None = Field(
        (0.5, 1.5),
        description="(low, high) on θ0's prediction uncertainty on the frame (ttt/confidence_shift.py; units of the "
        "training images' own 99.5 % tail): the step scale is the larger of this gate's and the shift gate's, so it "
        "opens where the frozen model grows unsure before the pixels look unusual. Needs `confidence_reference` in "
        "the checkpoint; costs one forward of θ0 per frame the shift gate leaves not fully open once the stream has "
        "stepped (that forward is the prediction of a frame it serves with θ0). None = off",
    )
    anchor: float = Field(
        0.0, ge=0.0, le=1.0, description="after each step and on each closed frame, pull the weights this fraction "
        "toward θ0 (a detected return pulls by `guard.RETURN_ANCHOR` instead)",
    )
    predict_ema: float = Field(
        0.0, ge=0.0, lt=1.0,
        description="predict with an exponential moving average of the adapted weights (a mean teacher): after each "
        "frame's update or relaxation, ema <- predict_ema * ema + (1 - predict_ema) * weights. 0 = the latest weights",
    )
    feature_align: float = Field(
        0.03, ge=0.0,
        description="weight of a feature-alignment term beside the MAE loss (TTT++; ttt/feature_align.py): the mean "
        "squared z-score of f's per-channel map statistics on the unmasked sample against the training images' "
        "(`feature_stats_reference`), so adapting keeps f's maps where h reads them. One more forward and backward "
        "of f per sample; MAE objective only; included in the step's reported loss. 0 = off; off without the "
        "reference",
    )


class TTTConfig(BaseModel):
    """How one stream adapts. Defaults follow the authors' release unless a preset says otherwise."""

    model_config = ConfigDict(extra="forbid")  # a misspelt or removed field is an error, not silently ignored

    window: int = Field(16, ge=1, description="explicit memory: frames kept in the sliding window (k)")
    batch_size: int = Field(32, ge=1, description="samples per TTT step (B)")
    micro_batch: int = Field(8, ge=1, description="samples per forward/backward; gradients are accumulated")
    sampling: Literal["with_replacement", "permutation"] = "permutation"
    steps_per_frame: int = Field(1, ge=0)
    optimizer: Literal["sgd", "adamw"] = "adamw"
    lr: float = 1e-4
    weight_decay: float = 0.05
    backbone_lr_mult: float = 0.1
    grad_clip: float | None = 0.01
    reset_optimizer_each_frame: bool = True
    reset_weights_each_frame: bool = False
    sample_augment: Literal["none", "kitti", "coco", "auto"] = Field(
        "none",
        description="how each of a step's B samples is cut from its window frame, as the authors' release does "
        "(ttt/sample_augment.py; sizes in pixels of the working resolution): `none`: the whole frame; "
        "`kitti`: a random 512×1024 crop, a side the frame is smaller in taken whole (detectron2 RandomCrop "
        "'absolute'); `coco`: random horizontal flip, scale jitter ×U(0.1, 2.0) into a 1024-pixel square, a fixed "
        "1024×1024 crop padded at the bottom/right (detectron2 large-scale jitter; padding counts neither as input "
        "nor in the loss; the square is the frame's long side when that is under 1024); `auto`: `kitti` or `coco` by "
        "the model's label set (19 street classes / 80 or 133 COCO classes), else `none`",
    )

    mask_ratio: float = Field(0.85, ge=0.0, lt=1.0)
    loss_on: Literal["all", "masked"] = "all"
    amp: bool = True
    compile: bool = Field(
        False,
        description="torch.compile the stream's forward (prediction and TTT step; static shapes). For CUDA: the "
        "first frames of each shape are slow while it compiles",
    )
    every_n_frames: int = Field(
        1, ge=1, description="take the TTT step on every n-th frame only; the window still receives every frame"
    )
    schedule: Schedule = Field(
        "sync",
        description="when a frame's TTT step runs relative to its prediction (the step itself is the same): "
        "`sync`: before it, so frame t is predicted with the weights adapted through t; `pipelined`: after it, frame "
        "t predicted with the weights adapted through t-1 and the service sending the result before the step; "
        "`async`: on a background step executor (ttt/step_executor.py), each prediction using the weights the steps "
        "last published, and a step that has not started when the stream's next due frame arrives skipped "
        "(`steps_skipped`), so predictions never wait for a step",
    )
    guard: GuardConfig | None = Field(
        None,
        description="the safe-adaptation guard (ttt/guard.py): when to step, how far, and which weights predict; "
        "None = unguarded, as the paper's rows run",
    )


def release_preset() -> TTTConfig:
    """The authors' release, unguarded: AdamW 1e-4 re-created each frame (backbone ×0.1, wd 0.05, clip 0.01),
    B = 32 in micro-batches of 8, k = 16, mask ratio 0.85, loss over all pixels, and the release's sample
    augmentation for the checkpoint's label set (`auto`: KITTI crops for 19 street classes, COCO jitter for 80 /
    133 classes, whole frames otherwise). The paper's reference; far too slow to serve on a CPU."""
    return TTTConfig(sample_augment="auto")


def full_preset() -> TTTConfig:
    """The best quality: a step on every frame with B = 4 full frames (SGD 3e-3, kept momentum, masked-pixel
    loss), with the whole guard: shift and confidence gates, feature alignment, θ0 on typical frames.
    Test videos, Δ mIoU drift+noise+fog pooled vs `main_task_only` (docs/benchmark/results.json): A +7.91
    (clean −0.20), B +1.66 (clean 0.00). Cost: 6.84× `main_only` (bench_quick_cpu.json)."""
    return TTTConfig(
        window=16,
        batch_size=4,
        micro_batch=4,
        sampling="with_replacement",
        optimizer="sgd",
        lr=3e-3,
        weight_decay=0.0,
        backbone_lr_mult=1.0,
        grad_clip=1.0,
        reset_optimizer_each_frame=False,
        loss_on="masked",
        guard=GuardConfig(),
    )


def default_preset() -> TTTConfig:
    """`full` at a fraction of its cost: one full frame per step at twice the step size, pipelined (the step
    leaves the latency path), predictions from a moving average of the weights (smooths single-sample steps),
    1 % pull toward θ0. Test videos, Δ mIoU drift+noise+fog pooled vs `main_task_only`: A +7.66 (clean −0.06),
    B +2.06 (clean 0.00). Cost: 3.03× `main_only` (bench_quick_cpu.json)."""
    full = full_preset()
    assert full.guard is not None
    return full.model_copy(update={
        "batch_size": 1, "micro_batch": 1, "lr": 6e-3, "schedule": "pipelined",
        "guard": full.guard.model_copy(update={"predict_ema": 0.9, "anchor": 0.01}),
    })


def fast_preset() -> TTTConfig:
    """The cheapest useful point: one full frame per step on every third frame at three times `full`'s step
    size, pipelined, 1 % pull toward θ0, without the confidence gate (it let the return videos' final clean
    segment fall by 1.5 on A's validation videos). Test videos, Δ mIoU drift+noise+fog pooled vs
    `main_task_only`: A +6.05 (clean −0.05), B −0.05 (clean 0.00). Cost: 1.71× `main_only`."""
    full = full_preset()
    assert full.guard is not None
    return full.model_copy(update={
        "batch_size": 1, "micro_batch": 1, "lr": 9e-3, "every_n_frames": 3, "schedule": "pipelined",
        "guard": full.guard.model_copy(update={"confidence_gate": None, "anchor": 0.01}),
    })


TTT_PRESETS = {"release": release_preset, "full": full_preset, "default": default_preset, "fast": fast_preset}
GUARD_FIELDS = tuple(GuardConfig.model_fields)


def with_overrides(cfg: TTTConfig, overrides: dict[str, object]) -> TTTConfig:
    """`cfg` with `overrides` (validated). A guard field may be named directly (`shift_gate=...`): it is set on
    `cfg`'s guard; `guard={...}` sets several of them (on an unguarded configuration it starts from
    `GuardConfig`'s defaults, `full`'s guard); `guard=None` runs unguarded. ValueError naming the problem for an
    unknown field, a guard field on an unguarded configuration, or `shift_gate=None`."""
    if not overrides:
        return cfg
    flat = {k: v for k, v in overrides.items() if k not in GUARD_FIELDS}
    guard_changes = {k: v for k, v in overrides.items() if k in GUARD_FIELDS}
    data = {**cfg.model_dump(), **flat}
    if isinstance(data.get("guard"), dict) and isinstance(flat.get("guard"), dict) and cfg.guard is not None:
        data["guard"] = {**cfg.guard.model_dump(), **flat["guard"]}
    if guard_changes.get("shift_gate", ()) is None:
        raise ValueError("shift_gate=None: the shift gate is the guard's core; run without the guard with guard=None")
    if guard_changes:
        if data.get("guard") is None:
            raise ValueError(f"{', '.join(guard_changes)}: this configuration runs without the safe-adaptation "
                             "guard; set guard={...} to add one")
        data["guard"] = {**dict(data["guard"]), **guard_changes}
    return TTTConfig.model_validate(data)


def ttt_preset(name: str, **overrides: object) -> TTTConfig:
    """A named preset with optional field overrides (validated; see `with_overrides`)."""
    if name not in TTT_PRESETS:
        raise ValueError(f"unknown TTT preset {name!r}; choose one of {sorted(TTT_PRESETS)}")
    return with_overrides(TTT_PRESETS[name](), overrides)
