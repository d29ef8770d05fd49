"""Reference statistics a checkpoint carries for the safe-adaptation guard: the training images' low-level
appearance (`input_stats_reference`, see mask2former_ttt/ttt/shift_score.py)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from model.checkpoint import load_config, save_config
from mask2former_ttt.data.readers import StillDataset
from mask2former_ttt.ttt.frames import to_working_resolution
from mask2former_ttt.ttt.shift_score import reference_statistics

log = logging.getLogger(__name__)


def input_reference(
    dataset: StillDataset, short_side: int, max_images: int = 500, max_size: int | None = None
) -> dict[str, list[float]]:
    """Statistics of up to `max_images` un-augmented training images (evenly spaced), at the working resolution
    the adapter sees (short side `short_side`, long side capped at `max_size`)."""
    n = len(dataset)
    if n < 2:
        raise ValueError(f"{dataset.root}: need at least 2 training images to calibrate, found {n}")
    indices = torch.linspace(0, n - 1, min(n, max_images)).round().long().unique().tolist()
    frames = (to_working_resolution(dataset[i]["image"], short_side, max_size) for i in indices)
    return reference_statistics(frames)


def calibrate_checkpoint(model_dir: Path, data_root: Path, split: str = "train", dataset_format: str = "auto",
                         resize: tuple[int, int] | None = None, max_images: int = 500) -> dict[str, list[float]]:
    """Compute `input_stats_reference` from a training set and write it into `model_dir/config.json`
    (weights untouched). For checkpoints trained elsewhere, e.g. converted detectron2 / Hugging Face weights."""
    cfg = load_config(model_dir)
    dataset = StillDataset(data_root, split, dataset_format, resize=resize, augment=False)
    cfg.input_stats_reference = input_reference(dataset, cfg.image_size, max_images, cfg.max_size)
    save_config(cfg, model_dir)
    log.info("input statistics of %d %s images written to %s", min(len(dataset), max_images), split, model_dir)
    return cfg.input_stats_reference
