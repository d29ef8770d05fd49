"""TTT configuration and presets: `release` = the authors' code; `full`, `default` and `fast` = points of the
cost/quality frontier measured on our validation videos (docs/benchmark/cost_levers.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator


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
    sample_augment: Literal["none", "kitti", "coco", "auto"] = Field(
        "none",
        description="how each of a step's B samples is cut from its window frame, as the authors' release does "
        "(ttt/sample_augment.py; sizes in pixels of the working resolution): `none`: the whole frame (or `crop`); "
        "`kitti`: a random 512×1024 crop, a side the frame is smaller in taken whole (detectron2 RandomCrop "
        "'absolute'); `coco`: random horizontal flip, scale jitter ×U(0.1, 2.0) into a 1024-pixel square, a fixed "
        "1024×1024 crop padded at the bottom/right (detectron2 large-scale jitter; padding counts neither as input "
        "nor in the loss; the square is the frame's long side when that is under 1024); `auto`: `kitti` or `coco` by "
        "the model's label set (19 street classes / 80 or 133 COCO classes), else `none`. Not combined with `crop`",
    )

    @model_validator(mode="after")
    def _one_sample_geometry(self) -> "TTTConfig":
        if self.crop is not None and self.sample_augment != "none":
            raise ValueError(f"crop and sample_augment={self.sample_augment!r} both shape the samples: pick one")
        return self

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
    adapt_scope: Literal["all", "late", "norms_biases", "lowrank"] = Field(
        "all",
        description="which of f's (and g's) tensors adapt: all of them; `late`: f's last half of stages, its final "
        "norms and g (backward stops at the first adapted stage); `norms_biases`: every 1-D tensor (norm affines "
        "and biases); `lowrank`: every tensor, ≥2-D ones as W0 + B·A of rank `lowrank_rank` (ttt/low_rank.py)",
    )
    lowrank_rank: int = Field(4, ge=1, description="rank of the low-rank deltas (adapt_scope `lowrank`)")
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
    feature_align: float = Field(
        0.0, ge=0.0,
        description="weight of a feature-alignment term added to the objective (TTT++; ttt/feature_align.py): the "
        "mean squared z-score of f's per-channel feature statistics on the unmasked sample against the training "
        "images' (`feature_stats_reference`, `m2f-ttt calibrate`), so adapting keeps f's maps where h reads them. "
        "Costs one more forward and backward of f per sample. Only with the MAE objective (Tent and self-training "
        "stay as they are). The step's reported loss, and what `loss_gate` / `loss_ceiling` compare, include the "
        "term. 0 = off; off without the reference",
    )
    loss_gate: float | None = Field(
        None, description="skip the step when ℓ_s < loss_gate × the model's clean reference loss"
    )
    loss_ceiling: float | None = Field(
        None, description="skip the step when ℓ_s > loss_ceiling × the model's clean reference loss: a shift the "
        "reconstruction cannot follow (issue 12: on domain B's haze ℓ_s reaches 7-8× the reference)",
    )
    shift_gate: tuple[float, float] | None = Field(
        None,
        description="(low, high): scale each frame's steps by clamp((s - low) / (high - low), 0, 1), s = the frame's "
        "shift score against the training images (ttt/shift_score.py); at 0 the step is skipped and the weights "
        "relax toward θ0 by `anchor`. Needs `input_stats_reference` in the checkpoint, else it is off",
    )
    feature_gate: tuple[float, float] | None = Field(
        None,
        description="(low, high) on the encoder-feature shift score of the frame under θ0 (ttt/feature_shift.py; "
        "units of the training images' own 99.5 % tail): the step scale is the larger of this gate's and "
        "`shift_gate`'s, so it opens on shifts the model feels before the pixels show them. Needs `shift_gate` and "
        "`feature_stats_reference` in the checkpoint (`m2f-ttt calibrate`); costs one encoder forward without "
        "gradients per frame the pixel gate leaves not fully open. None = off",
    )
    confidence_gate: tuple[float, float] | None = Field(
        None,
        description="(low, high) on the θ0 model's prediction uncertainty on the frame (ttt/confidence_shift.py; "
        "units of the training images' own 99.5 % tail): the step scale is the largest of this gate's, "
        "`feature_gate`'s and `shift_gate`'s, so it opens where the frozen model starts to fail before the pixels "
        "look unusual. Needs `shift_gate` and `confidence_reference` in the checkpoint (`m2f-ttt calibrate`); costs "
        "one forward of h∘f without gradients per frame the other gates leave not fully open, except while the "
        "stream is at θ0: that forward is then the frame's prediction. None = off",
    )
    confidence_every: int = Field(
        1, ge=1,
        description="once the stream has stepped, the confidence gate runs its forward of θ0 on every n-th frame "
        "only and reuses the last score in between (a stream that never stepped reuses its own predictions, free)",
    )
    return_frames: int | None = Field(
        None, ge=1,
        description="return detection: after this many consecutive frames with the shift gate closed (step scale 0) "
        "the stream counts as back on the training domain: the optimizer state is dropped once and each further "
        "closed frame relaxes the weights toward θ0 by `return_anchor` instead of `anchor`. One frame with the gate "
        "open restarts the count (hysteresis: a flickering score does not reset the weights). None = off",
    )
    predict_ema: float = Field(
        0.0, ge=0.0, lt=1.0,
        description="predict with an exponential moving average of the adapted weights (Polyak averaging, a mean "
        "teacher): after each frame's update or relaxation, ema <- predict_ema * ema + (1 - predict_ema) * weights; "
        "the TTT steps still train the weights themselves. 0 = off (predict with the latest weights)",
    )
    theta0_when_shut: bool = Field(
        False,
        description="predict with θ0 (the model as trained) while the stream's latest gate decision was shut (step "
        "scale 0): a frame the guard finds typical of the training images is served by the model trained on them. "
        "The adapted weights are kept for when the gate opens again; they relax toward θ0 as on any shut frame "
        "(`anchor`, then `return_anchor` and the snap once a return is detected). The forward of θ0 the confidence "
        "gate runs on such a frame is then its prediction too. A pipelined stream goes by the previous frame's "
        "decision",
    )
    return_snap_frames: int | None = Field(
        50, ge=1,
        description="with return detection: after this many further closed frames the weights and their moving "
        "average are set to θ0 exactly (the relaxation has left < 1e-4 of the adaptation in the weights at "
        "`return_anchor` 0.2, and 0.5 % in a 0.9 average), so the stream predicts with θ0 again and the confidence "
        "gate reuses its predictions instead of a forward of θ0. None = relax only",
    )
    return_anchor: float = Field(
        0.2, ge=0.0, le=1.0,
        description="per-frame relaxation toward θ0 once a return is detected (1.0 = reset to θ0)",
    )
    shift_score: Literal["z", "quantile"] = Field(
        "z", description="the shift score `shift_gate` thresholds: `z` (largest |z-score| against the training "
        "images' mean and std) or `quantile` (largest distance from the training median in units of the training "
        "set's 0.5 %/99.5 % tail; 1.0 = as atypical as the most extreme 0.5 % of training images)",
    )


def release_preset() -> TTTConfig:
    """The authors' release: AdamW 1e-4, backbone ×0.1, wd 0.05, clip 0.01, optimizer re-created each frame,
    B = 32 in micro-batches of 8, k = 16, mask ratio 0.85 (int(L·(1-r)) patches kept), loss over all pixels, and
    the release's sample augmentation for the checkpoint's dataset (`sample_augment="auto"`, resolved per model by
    ttt/sample_augment.py from model/recipes.py): a 19-class street model (KITTI-STEP / Cityscapes) gets random
    512×1024 crops, an 80- or 133-class COCO model flip + scale jitter 0.1-2.0 + a 1024×1024 crop, any other
    label set (the project's synthetic models) whole frames. Converted checkpoints of those label sets also run at
    the release's working size (1024 / long side 2048, or 800 / 1333; ModelConfig.image_size / max_size)."""
    return TTTConfig(sample_augment="auto")


def full_preset() -> TTTConfig:
    """Session 3's default, at full cost: a step on every frame with B = 4 full frames. Chosen on the project's
    validation videos only (scripts/tune_default_preset.py, docs/benchmark/tuning.md): SGD lr 3e-3 with momentum,
    persistent optimizer, masked-pixel loss, k = 16, and the safe-adaptation guard: steps are scaled by the
    frame's shift score (0 below 2.5, full above 4) and, until session 14, every update and skipped frame pulled
    the weights 1 % back toward θ0. Return detection (issue 12, session 7): after 5 frames in a row with the gate
    closed the stream counts as back on the training domain, drops its optimizer state once and relaxes 20 % per
    frame toward θ0 (before it: the 1 %), so the clean stretch after a shift no longer pays for the adaptation left in the weights
    (docs/benchmark/domains.md). The paper's rows (evaluation/protocol.py) run on its optimizer settings without
    the guard. The confidence gate (`confidence_gate=(0.5, 1.5)`, issue 12, sessions 12-13) opens the step where
    the frozen model grows unsure before the pixels look unusual; chosen on domain A's validation videos (+6.33 vs
    +6.07 per video), on the test videos (2 mask seeds, pooled) it left A unchanged (+4.54 vs +4.58, clean 0.00) and
    lifted domain B from -0.22 to +0.08 (drift +1.94, was +1.05; clean 0.00); it costs one θ0 forward per frame
    the pixel gate leaves closed once the stream has stepped (at θ0 that forward is the frame's prediction).
    Issue 12, session 14: no pull toward θ0 while adapting (`anchor` 0, was 0.01; chosen on A's validation videos,
    +6.38 / +6.96 per video / pooled vs +6.32 / +6.81; on the test videos A +4.40 vs +4.75 per video, B +0.45 vs
    +0.08 pooled), and frames the gate finds typical of the training images are served by θ0
    (`theta0_when_shut`; a tie on A's validation videos, and it spares the second forward on such frames).
    Session 15: the feature-alignment term `default` chose (`feature_align=0.03`, ttt/feature_align.py); on A's
    validation videos +10.20 / +9.99 per video / pooled vs +6.38 / +6.96, clean -0.44 (was -0.04). Costs ≈ 5× a
    plain forward on shifted video on the 2-core CPU before it (docs/benchmark/cost_levers.md), plus one forward and
    backward of f per sample."""
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
        anchor=0.0,
        shift_gate=(2.5, 4.0),
        confidence_gate=(0.5, 1.5),
        return_frames=5,
        return_anchor=0.2,
        theta0_when_shut=True,
        feature_align=0.03,
    )


def default_preset() -> TTTConfig:
    """`full` at half its cost, chosen from the cost/quality frontier on the validation videos
    (scripts/cost_levers.py, docs/benchmark/cost_levers.md): one full frame per step (B = 1) at twice the step
    size, pipelined (a frame is predicted with the weights adapted through the previous one, so the step leaves
    the service's latency path; no measurable quality cost on val). Val drift+noise+fog gain +5.6 mIoU vs
    `full`'s +6.4, at 2.5× a plain forward instead of 5.2× (session 3's figures; since session 15's feature
    alignment: 3.4× vs 5.9× on a fog video). Predictions use a moving average of the adapted
    weights (`predict_ema=0.9`, issue 12, session 10): it smooths the noise of single-sample steps; chosen on
    domain A's validation videos (+5.74 vs +5.61 without, 0.7: +5.66), it also gained on both domains' test videos
    (docs/benchmark/domains.md). The confidence gate (`confidence_gate=(0.5, 1.5)`, issue 12, session 12) opens
    the step where the frozen model grows unsure before the pixels look unusual (domain B's drift); chosen on A's
    validation videos (+6.00 vs +5.74 per video, clean −0.0; (1.0, 2.0): +5.92, (1.5, 3.0): +5.83); it comes with
    `full`'s settings. So does `theta0_when_shut` (session 14: a tie on A's validation and test videos; domain B's
    drift-and-return video ends 0.00 against `main_task_only` on its final clean segment, was -1.37). `full`'s
    `anchor` 0 is not taken: 1 % per step stays (A validation +5.29 per video at 0). Session 15: a feature-alignment
    term beside the MAE loss (`feature_align=0.03`, TTT++; ttt/feature_align.py) keeps f's feature statistics near
    the training images' while it adapts; chosen on A's validation videos (+10.01 / +9.99 per video / pooled vs
    +6.00 / +6.59; 0.01: +9.66 / +9.88, 0.1: +9.88 / +9.73, 1.0: +9.38 / +9.22); on domain B's held-out test videos
    it took drift+noise+fog from -0.63 to +2.06 pooled (2 mask seeds, clean 0.00). It costs one more forward and
    backward of f per step (docs/benchmark/domains.md); `full` carries it since, and `default` inherits it."""
    return full_preset().model_copy(
        update={"batch_size": 1, "micro_batch": 1, "lr": 6e-3, "pipelined": True, "predict_ema": 0.9, "anchor": 0.01}
    )


def fast_preset() -> TTTConfig:
    """The cheapest useful point of the frontier (docs/benchmark/cost_levers.md): one full frame per step on every
    third frame at three times `full`'s step size, pipelined; ≈ 1.5× a plain forward on the 2-core CPU, for about
    40 % of `full`'s val gain (+2.6 mIoU on drift+noise+fog), both before session 15's feature alignment (its
    extra forward and backward of f now comes on every third frame). Without `full`'s confidence gate: on domain A's
    validation videos it gained there (+2.96 vs +2.58 per video) but let the return videos' final clean segment fall
    to -1.53 against `main_task_only` (+0.02 without), and clean to -0.17 (-0.08) (issue 12, session 13). Of
    `full`'s session-14 changes it keeps 1 % `anchor` (not measured at 0) and takes `theta0_when_shut`, and it takes
    session 15's `feature_align` 0.03: on A's validation videos +7.23 / +7.66 per video / pooled with both, against
    +2.58 / +3.00 (`theta0_when_shut` alone: +2.57 / +2.98, a tie), clean -0.21 (-0.10)."""
    return full_preset().model_copy(
        update={"batch_size": 1, "micro_batch": 1, "lr": 9e-3, "every_n_frames": 3, "pipelined": True,
                "confidence_gate": None, "anchor": 0.01}
    )


TTT_PRESETS = {"release": release_preset, "full": full_preset, "default": default_preset, "fast": fast_preset}


def ttt_preset(name: str, **overrides: object) -> TTTConfig:
    """A named preset with optional field overrides (validated)."""
    if name not in TTT_PRESETS:
        raise ValueError(f"unknown TTT preset {name!r}; choose one of {sorted(TTT_PRESETS)}")
    cfg = TTT_PRESETS[name]()
    return TTTConfig.model_validate({**cfg.model_dump(), **overrides}) if overrides else cfg
