"""How a TTT step's samples are cut from the window frames (`TTTConfig.sample_augment`), as the authors' release
does it (renwang435/video-ttt-release, mask2former/data/dataset_mappers/*_pretrain_dataset_mapper.py; the sizes are
model/recipes.py's). Every random draw comes from the stream's generator, so a seeded stream is reproducible.

- `kitti` (semantic mapper: ResizeShortestEdge + RandomCrop_CategoryAreaConstraint('absolute', (512, 1024)) with
  SINGLE_CATEGORY_MAX_AREA 1.0, i.e. a plain detectron2 RandomCrop): a 512×1024 window at a uniformly random
  offset; in a dimension where the frame is smaller the crop is the whole dimension (detectron2's 'absolute' crop
  takes min(crop, size); it does not pad).
- `coco` (panoptic / instance mappers: RandomFlip, ResizeScale(0.1, 2.0, 1024, 1024), FixedSizeCrop(1024)):
  horizontal flip with probability 0.5; a scale s ~ U(0.1, 2.0); the frame resized to fit inside an (S·s)×(S·s)
  square (aspect kept; S = 1024); an S×S window at offset round(max_offset · u), one u ~ U(0, 1) for both axes,
  padded at the bottom and right where the resized frame is smaller. The release pads with grey 128 and its loss
  averages over the padding too; here padded pixels are 0 in normalized space (the mean colour), flagged not
  visible in the 4th channel and left out of the loss (`valid` = 0). S is capped at the frame's long side, so a
  frame under 1024 pixels (the tiny CPU model at 128 px) is jittered and padded at its own scale instead of being
  padded up to 1024; at the release's working sizes (short side 800, long side up to 1333) S is 1024. The resized
  frame keeps at least one mask patch or 32 pixels (whichever is larger) on its short side (aspect kept).
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
from torch.nn import functional as F

from model.config import ModelConfig
from model.masking import normalize
from model.recipes import recipe_for
from mask2former_ttt.ttt.config import TTTConfig
from mask2former_ttt.ttt.frames import MULTIPLE
from mask2former_ttt.ttt.objectives import MASK_PATCH

Augment = Literal["none", "kitti", "coco"]

KITTI_CROP = (512, 1024)  # INPUT.CROP.SIZE, configs/kitti_step/semantic-segmentation/*.yaml
COCO_SIZE = 1024  # INPUT.IMAGE_SIZE, configs/coco_videos/*/Base-COCO-*.yaml
COCO_SCALE = (0.1, 2.0)  # INPUT.MIN_SCALE, INPUT.MAX_SCALE
FLIP_PROB = 0.5  # detectron2 RandomFlip's default


def resolve(augment: str, model_cfg: ModelConfig) -> Augment:
    """`auto` -> the release recipe of the model's label set (`kitti`, `coco`, or `none` without one)."""
    if augment != "auto":
        return augment  # type: ignore[return-value]
    recipe = recipe_for(model_cfg.num_classes)
    return recipe.name if recipe else "none"


def _rand(generator: torch.Generator) -> float:
    return float(torch.rand((), generator=generator))


def coco_side(frames: list[torch.Tensor]) -> int:
    """The side S of the COCO samples: 1024, or the largest frame side when that is smaller."""
    return min(COCO_SIZE, max(max(f.shape[1:]) for f in frames))


def coco_sample(
    frame: torch.Tensor, side: int, min_side: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int, int, int]]:
    """frame: (3, h, w) uint8 -> (3, side, side) float in [0, 1] (0 on padding), (1, side, side) valid mask and,
    for tests, (new_h, new_w, top, left): the resized frame's size and where the window starts in it."""
    if _rand(generator) < FLIP_PROB:
        frame = frame.flip(-1)
    h, w = frame.shape[1:]
    lo, hi = COCO_SCALE
    scale = lo + (hi - lo) * _rand(generator)
    out_scale = min(side * scale / h, side * scale / w)  # fit inside the scaled square, aspect kept
    out_scale = max(out_scale, min_side / min(h, w))  # but not below `min_side` on the short side
    nh, nw = round(h * out_scale), round(w * out_scale)
    image = frame.float()[None] / 255.0
    if (nh, nw) != (h, w):
        image = F.interpolate(image, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
    u = _rand(generator)  # FixedSizeCrop: one uniform draw for both offsets
    top, left = round(max(nh - side, 0) * u), round(max(nw - side, 0) * u)
    window = image[0, :, top : top + side, left : left + side]
    ch, cw = window.shape[1:]
    out = frame.new_zeros((3, side, side), dtype=torch.float32)
    valid = frame.new_zeros((1, side, side), dtype=torch.float32)
    out[:, :ch, :cw] = window
    valid[:, :ch, :cw] = 1.0
    return out, valid, (nh, nw, top, left)


def min_content_side(mask_patch: int) -> int:
    """The smallest side a jittered frame is resized to: one mask patch or 32 pixels, whichever is larger."""
    return max(mask_patch, MULTIPLE)


def draw_samples(
    window: Sequence[torch.Tensor], cfg: TTTConfig, augment: Augment, model_cfg: ModelConfig,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A step's `cfg.batch_size` samples from the window's frames ((3, h, w) uint8), each cut by `augment`:
    (B, 3, ch, cw) normalized float, and a (B, 1, ch, cw) valid mask (0 on padding) or None without padding."""
    n, b = len(window), cfg.batch_size
    if cfg.sampling == "with_replacement":
        idx = torch.randint(n, (b,), generator=generator).tolist()
    else:
        reps = -(-b // n)
        idx = torch.cat([torch.randperm(n, generator=generator) for _ in range(reps)])[:b].tolist()
    frames = [window[i] for i in idx]
    if augment == "coco":
        side, least = coco_side(frames), min_content_side(MASK_PATCH)
        samples = [coco_sample(f, side, least, generator)[:2] for f in frames]
        valid = torch.stack([v for _, v in samples])
        return normalize(torch.stack([x for x, _ in samples]), model_cfg) * valid, valid
    if augment == "kitti":
        h, w = frames[0].shape[1:]
        ch, cw = min(KITTI_CROP[0], h), min(KITTI_CROP[1], w)
        if ch < h or cw < w:
            tops = torch.randint(h - ch + 1, (b,), generator=generator).tolist()
            lefts = torch.randint(w - cw + 1, (b,), generator=generator).tolist()
            frames = [f[:, t : t + ch, x : x + cw] for f, t, x in zip(frames, tops, lefts)]
    return normalize(torch.stack(frames), model_cfg), None
