"""Joint training loop: ℓ_m + ℓ_s on still images, with periodic checkpoints, resume and a progress bar."""

from __future__ import annotations

import itertools
import json
import logging
import math
import random
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from model.checkpoint import load_checkpoint, save_checkpoint
from model.config import ReconSpec, preset
from model.device import autocast, needs_grad_scaler, resolve_device
from model.losses import JointLoss
from model.masking import normalize
from model.ymodel import YModel, build_model
from mask2former_ttt.data.classes import LabelSet
from mask2former_ttt.data.readers import StillDataset, collate
from mask2former_ttt.training.calibration import encoder_reference, input_reference, prediction_reference
from mask2former_ttt.training.config import TrainConfig
from mask2former_ttt.training.optim import build_optimizer, poly_schedule

log = logging.getLogger(__name__)
STATE = "trainer_state.pt"


def build_dataset(cfg: TrainConfig) -> StillDataset:
    """The still-image training set (synthetic / COCO panoptic, Cityscapes or KITTI-STEP layout), augmented."""
    return StillDataset(cfg.data_root, cfg.split, cfg.dataset_format, resize=cfg.resize, augment=True)


def init_model(cfg: TrainConfig, class_names: list[str], thing_ids: list[int]) -> YModel:
    """From scratch (a preset sized for the dataset's classes), a project checkpoint, or a Hugging Face directory."""
    if cfg.init == "checkpoint":
        return load_checkpoint(cfg.init_path)
    if cfg.init == "hf":
        from model.hf_import import load_hf_mask2former

        return load_hf_mask2former(cfg.init_path)
    mcfg = preset(cfg.model_preset, class_names=class_names, thing_class_ids=thing_ids, recon=ReconSpec(variant=cfg.recon_variant))
    return build_model(mcfg)


def match_inference_size(model: YModel, dataset: StillDataset) -> None:
    """Make the checkpoint infer at the short side it is trained at (`cfg.image_size`), logging any change: data at
    another size than the preset's would otherwise train at one size and be resized to another at inference."""
    h, w = dataset.load(0).image.shape[:2]
    trained = min(h, w)
    if trained != model.cfg.image_size:
        log.warning("training images are %dx%d: the checkpoint will infer at short side %d (was %d); pass --resize "
                    "to train at another size", h, w, trained, model.cfg.image_size)
        model.cfg.image_size = trained
    else:
        log.info("training at %dx%d (inference short side %d)", h, w, trained)


def dataset_colors(labels: LabelSet, class_names: Sequence[str]) -> list[list[int]] | None:
    """The label set's display colours for a checkpoint with `class_names` (`meta.json` `colors`), or None when the
    classes are not the label set's or its colours cannot tell them apart (the same default colour everywhere):
    classes are then coloured by name (`mask2former_ttt.outputs.palette.class_colors`)."""
    rows = [[int(v) for v in c] for c in labels.colors]
    same = list(labels.class_names) == list(class_names) and len(rows) == len(class_names)
    return rows if same and len({tuple(r) for r in rows}) == len(rows) else None


def _batches(loader: DataLoader) -> Iterator[dict[str, Any]]:
    while True:
        yield from loader


@torch.no_grad()
def recon_reference(model: YModel, loader: DataLoader, loss: JointLoss, device: torch.device, n_batches: int = 4) -> float:
    """Mean ℓ_s of the trained model on clean training images (eval mode, fixed masks): the TTT guard's reference."""
    model.eval()
    gen = torch.Generator().manual_seed(1234)
    values = [
        float(loss.reconstruction(model, normalize(b["image"].to(device), model.cfg), gen))
        for b in itertools.islice(_batches(loader), n_batches)
    ]
    return sum(values) / len(values)


def train(cfg: TrainConfig) -> Path:
    """Run joint training (or main-task-only training: `cfg.recon_weight` 0); returns the directory of the final
    checkpoint (`out_dir/final`)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    device = resolve_device(cfg.device)
    dataset = build_dataset(cfg)
    last = cfg.out_dir / "last"
    resuming = cfg.resume and (last / STATE).is_file()
    model = load_checkpoint(last) if resuming else init_model(cfg, list(dataset.labels.class_names), list(dataset.labels.thing_ids))
    if not resuming:
        match_inference_size(model, dataset)
        model.cfg.class_colors = dataset_colors(dataset.labels, model.cfg.class_names)
    model.to(device).train().requires_grad_(True)
    loss_fn = JointLoss(model, cfg.recon_weight).to(device)
    optimizer = build_optimizer(model, cfg)
    schedule = poly_schedule(optimizer, cfg)
    scaler = torch.amp.GradScaler("cuda") if needs_grad_scaler(device, cfg.amp) else None  # fp16 only, not bf16
    step = 0
    if resuming:
        state = torch.load(last / STATE, map_location=device, weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        step = state["step"]
        torch.set_rng_state(state["rng"])
        log.info("resuming from %s at step %d", last, step)
    gen = torch.Generator().manual_seed(cfg.seed + step)
    loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True, num_workers=cfg.num_workers, collate_fn=collate, drop_last=True)
    batches = _batches(loader)
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    (cfg.out_dir / "train_config.json").write_text(cfg.model_dump_json(indent=2))
    history: list[dict[str, float]] = []
    bar = tqdm(total=cfg.steps, initial=step, desc="joint training", unit="step", dynamic_ncols=True)
    while step < cfg.steps:
        batch = next(batches)
        x = normalize(batch["image"].to(device), model.cfg)
        masks = [m.to(device) for m in batch["mask_labels"]]
        classes = [c.to(device) for c in batch["class_labels"]]
        with autocast(device, cfg.amp):
            total, parts = loss_fn(model, x, masks, classes, gen)
        if not math.isfinite(float(total.detach())):
            raise FloatingPointError(f"non-finite training loss at step {step}: {parts}")
        optimizer.zero_grad(set_to_none=True)
        (scaler.scale(total) if scaler else total).backward()
        if scaler:
            scaler.unscale_(optimizer)
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        if scaler:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        schedule.step()
        step += 1
        history.append({"step": step, "loss": float(total.detach()), **parts})
        bar.update(1)
        if step % cfg.log_every == 0 or step == cfg.steps:
            recent = history[-cfg.log_every :]
            avg = {k: sum(h[k] for h in recent) / len(recent) for k in ("loss", "loss_main", "loss_recon")}
            bar.set_postfix({k: f"{v:.3f}" for k, v in avg.items()})
            log.info("step %d %s", step, " ".join(f"{k}={v:.4f}" for k, v in avg.items()))
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            _save(model, optimizer, schedule, step, last, history)
    bar.close()
    model.cfg.recon_trained = cfg.recon_weight > 0  # g trained jointly with f and h, or not at all
    model.cfg.recon_loss_reference = recon_reference(model, loader, loss_fn, device) if model.cfg.recon_trained else None
    plain = StillDataset(cfg.data_root, cfg.split, cfg.dataset_format, resize=cfg.resize, augment=False)
    model.cfg.input_stats_reference = input_reference(plain, model.cfg.image_size, max_size=model.cfg.max_size)
    model.cfg.feature_stats_reference = encoder_reference(model.eval(), plain)
    model.cfg.confidence_reference = prediction_reference(model, plain)
    final = save_checkpoint(model.eval(), cfg.out_dir / "final", extra={"steps": step})
    (cfg.out_dir / "history.json").write_text(json.dumps(history))
    log.info("final checkpoint %s (recon reference %.4f)", final, model.cfg.recon_loss_reference)
    return final


def _save(model: YModel, optimizer: torch.optim.Optimizer, schedule: Any, step: int, last: Path, history: list) -> None:
    save_checkpoint(model, last, extra={"step": step})
    state = {"optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(), "step": step, "rng": torch.get_rng_state()}
    torch.save(state, last / STATE)
    model.train()
