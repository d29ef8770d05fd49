"""Reference statistics a checkpoint carries for the safe-adaptation guard: the training images' low-level
appearance (`input_stats_reference`, see mask2former_ttt/ttt/shift_score.py) and the frozen encoder's feature
statistics on them (`feature_stats_reference`, see mask2former_ttt/ttt/feature_stats.py) and its prediction
uncertainty on them (`confidence_reference`, see mask2former_ttt/ttt/confidence_shift.py)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch

from model.checkpoint import load_checkpoint, load_config, save_config
from model.ymodel import YModel
from mask2former_ttt.data.readers import StillDataset
from mask2former_ttt.ttt.confidence_shift import confidence_reference
from mask2former_ttt.ttt.feature_stats import feature_reference
from mask2former_ttt.ttt.frames import to_working_resolution
from mask2former_ttt.ttt.shift_score import reference_statistics

log = logging.getLogger(__name__)


def reference_frames(
    dataset: StillDataset, short_side: int, max_images: int = 500, max_size: int | None = None
) -> Iterator[torch.Tensor]:
    """Up to `max_images` un-augmented training images (evenly spaced), each (3, h, w) uint8 at the working
    resolution the adapter sees (short side `short_side`, long side capped at `max_size`)."""
    n = len(dataset)
    if n < 2:
        raise ValueError(f"{dataset.root}: need at least 2 training images to calibrate, found {n}")
    indices = torch.linspace(0, n - 1, min(n, max_images)).round().long().unique().tolist()
    return (to_working_resolution(dataset[i]["image"], short_side, max_size) for i in indices)


def input_reference(
    dataset: StillDataset, short_side: int, max_images: int = 500, max_size: int | None = None
) -> dict[str, list[float]]:
    """Low-level statistics of `reference_frames` (the pixel gate's reference)."""
    return reference_statistics(reference_frames(dataset, short_side, max_images, max_size))


def _frames_for(model: YModel, dataset: StillDataset, max_images: int) -> Iterator[torch.Tensor]:
    """`reference_frames` at `model`'s working resolution, on its device."""
    device = next(model.parameters()).device
    return (f.to(device) for f in reference_frames(dataset, model.cfg.image_size, max_images, model.cfg.max_size))


def encoder_reference(model: YModel, dataset: StillDataset, max_images: int = 500) -> dict[str, list]:
    """The θ0 encoder's feature statistics on `reference_frames` (the feature gate's reference); `model` in eval
    mode, on any device."""
    return feature_reference(model, _frames_for(model, dataset, max_images))


def prediction_reference(model: YModel, dataset: StillDataset, max_images: int = 500) -> dict[str, float]:
    """The θ0 model's prediction uncertainty on `reference_frames` (the confidence gate's reference); `model` in eval
    mode, on any device."""
    return confidence_reference(model, _frames_for(model, dataset, max_images))


def calibrate_checkpoint(model_dir: Path, data_root: Path, split: str = "train", dataset_format: str = "auto",
                         resize: tuple[int, int] | None = None, max_images: int = 500) -> dict[str, list[float]]:
    """Compute `input_stats_reference`, `feature_stats_reference` and `confidence_reference` from a training set
    and write them into `model_dir/config.json` (weights untouched). For checkpoints trained elsewhere, e.g.
    converted detectron2 / Hugging Face weights, or calibrated before the feature or confidence gate existed."""
    cfg = load_config(model_dir)
    dataset = StillDataset(data_root, split, dataset_format, resize=resize, augment=False)
    cfg.input_stats_reference = input_reference(dataset, cfg.image_size, max_images, cfg.max_size)
    model = load_checkpoint(model_dir).eval()
    cfg.feature_stats_reference = encoder_reference(model, dataset, max_images)
    cfg.confidence_reference = prediction_reference(model, dataset, max_images)
    save_config(cfg, model_dir)
    log.info("input, encoder-feature and prediction-confidence statistics of %d %s images written to %s", min(len(dataset), max_images),
             split, model_dir)
    return cfg.input_stats_reference


@torch.no_grad()
def store_guard_references(model: YModel, frames: Iterable[torch.Tensor]) -> None:
    """Write the guard's three references, computed on `frames` ((3, H, W) uint8 at any size, brought to the working
    resolution as they come, so only those are kept), into `model.cfg` (`model` in eval mode, on any device)."""
    cfg, device = model.cfg, next(model.parameters()).device
    work = [to_working_resolution(f, cfg.image_size, cfg.max_size) for f in frames]
    if len(work) < 2:
        raise ValueError(f"need at least 2 frames to calibrate, found {len(work)}")
    cfg.input_stats_reference = reference_statistics(work)
    cfg.feature_stats_reference = feature_reference(model, (f.to(device) for f in work))
    cfg.confidence_reference = confidence_reference(model, (f.to(device) for f in work))


def calibrate_on_frames(model_dir: Path, frames: Iterable[torch.Tensor], device: str = "cpu") -> dict[str, list[float]]:
    """`calibrate_checkpoint` from unlabelled frames (`mask2former_ttt.footage`) instead of a training set: the
    references are then those of the user's own footage, which the guard treats as 'no shift'."""
    model = load_checkpoint(model_dir, device).eval()
    store_guard_references(model, frames)
    save_config(model.cfg, model_dir)
    log.info("input, encoder-feature and prediction-confidence statistics of the footage written to %s", model_dir)
    return model.cfg.input_stats_reference
