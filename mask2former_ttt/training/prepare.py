"""`m2f-ttt prepare`: make a converted (or Hugging Face) Mask2Former TTT-ready with nothing but unlabelled footage.

1. g (the reconstruction decoder a converted model gets freshly initialised) is trained with the TTT-MAE objective
   (`mask2former_ttt.ttt.objectives.mae_loss`: the patch mask of the stream's steps, MSE) on random footage frames
   at the model's working resolution, f and h frozen: AdamW, lr decaying to 0 (poly 0.9), gradient clip 1.
   With `adapt_encoder`, f is trained too (its own lr), plus a self-distillation term: the KL divergence from the
   frozen model's per-pixel class distribution (`semantic_probs`) to the adapting one's on the unmasked frames, so
   h∘f keeps predicting what it predicted, without labels.
2. The guard's three references (input, encoder-feature and confidence statistics) are computed on the footage.
3. A complete checkpoint (config says `recon_trained: true`, references present) and `prepare.json` are written.

Held-out frames (every ~10th, at most 32) are never trained on; the report gives the reconstruction loss on them
before and after (fixed masks), and with `adapt_encoder` the pixel agreement of the argmax predictions with the
frozen model's.

Crash safety: everything is written in a work directory beside OUT (`.<OUT name>.prepare/`), which holds the
training state (`.prepare-state/`) every `checkpoint_every` steps; a rerun with the same arguments continues from
it, and only a finished checkpoint is renamed to OUT, so OUT is never half-written.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
import pickle
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from collections.abc import Iterable
from typing import Any

import torch
from tqdm import tqdm

from model.checkpoint import save_checkpoint
from model.device import autocast, resolve_device
from model.masking import normalize, with_flag
from model.ymodel import ENCODER_PREFIX, RECON_PREFIX, YModel
from mask2former_ttt.training.calibration import store_guard_references
from mask2former_ttt.ttt.config import TTTConfig
from mask2former_ttt.ttt.frames import to_working_resolution
from mask2former_ttt.ttt.objectives import mae_loss, semantic_probs
from mask2former_ttt.ttt.param_groups import no_weight_decay

log = logging.getLogger(__name__)

STATE_DIR = ".prepare-state"
STATE_FILE = "state.pt"
REPORT = "prepare.json"
EVAL_SEED = 1234  # the held-out masks: the same before and after training
MAX_HOLDOUT = 32


class PrepareError(ValueError):
    """`prepare` cannot run as asked (one-line message)."""


@dataclass(frozen=True)
class PrepareOptions:
    """How g (and with `adapt_encoder`, f) is trained; what makes a rerun continue is these plus the inputs."""

    steps: int = 1000
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    adapt_encoder: bool = False
    encoder_lr: float = 1e-4
    distill_weight: float = 1.0
    checkpoint_every: int = 100
    seed: int = 0
    device: str = "auto"


def work_dir_for(out: Path) -> Path:
    """The directory `prepare` writes in before renaming it to `out` (beside it, hidden)."""
    return out.parent / f".{out.name}.prepare"


def check_out(out: Path, overwrite: bool) -> None:
    """Refuse an output that is a file, or a non-empty directory without `overwrite` (before any work is done)."""
    if out.is_file():
        raise PrepareError(f"-o {out} is a file; give a directory to create")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise PrepareError(f"-o {out} exists and is not empty; pass --overwrite to replace it")


def _split(n: int) -> tuple[list[int], list[int]]:
    """(training indices, held-out indices) of n frames: about every 10th held out (at least 1, at most 32)."""
    if n < 3:
        raise PrepareError(f"the footage gives {n} frame{'s' if n != 1 else ''}; prepare needs at least 3 "
                           "(raise --max-frames or add footage)")
    n_hold = max(1, min(MAX_HOLDOUT, n // 10))
    step = n / n_hold
    held = sorted({min(n - 1, int(step * i + step / 2)) for i in range(n_hold)})
    return [i for i in range(n) if i not in set(held)], held


def _fingerprint(identity: dict[str, Any], opts: PrepareOptions, frames: list[torch.Tensor]) -> str:
    """What a saved training state must match to be continued: the inputs, the options, a sample of the frames."""
    data = {k: v for k, v in asdict(opts).items() if k not in ("checkpoint_every", "device")}
    digest = hashlib.sha256(json.dumps({"identity": identity, "options": data}, sort_keys=True, default=str).encode())
    for f in frames[:: max(1, len(frames) // 16)]:
        digest.update(str((tuple(f.shape), int(f.sum()))).encode())
    return digest.hexdigest()[:16]


def _trainable(model: YModel, adapt_encoder: bool) -> list[str]:
    prefixes = (RECON_PREFIX, ENCODER_PREFIX) if adapt_encoder else (RECON_PREFIX,)
    return [n for n, _ in model.named_parameters() if n.startswith(prefixes)]


def _optimizer(model: YModel, names: list[str], opts: PrepareOptions) -> torch.optim.AdamW:
    params = dict(model.named_parameters())
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for n in names:
        groups.setdefault((n.startswith(ENCODER_PREFIX), no_weight_decay(n, params[n])), []).append(params[n])
    return torch.optim.AdamW(
        [{"params": ps, "lr": opts.encoder_lr if enc else opts.lr, "base_lr": opts.encoder_lr if enc else opts.lr,
          "weight_decay": 0.0 if nodecay else opts.weight_decay} for (enc, nodecay), ps in sorted(groups.items())],
        lr=opts.lr,
    )


def _forward(model: YModel):
    return lambda x, mode: model(x, mode=mode)


def _ttt_cfg(model: YModel) -> TTTConfig:
    return TTTConfig(mask_ratio=model.cfg.masking.ratio, loss_on=model.cfg.masking.loss_on)


def distill_loss(frozen: YModel, model: YModel, x: torch.Tensor) -> torch.Tensor:
    """KL(frozen ‖ adapting) of the per-pixel class distributions on the unmasked, normalized x (mean over pixels)."""
    with torch.no_grad():
        ref = semantic_probs(frozen(with_flag(x), mode="predict"))
    p = semantic_probs(model(with_flag(x), mode="predict"))
    return (ref * (ref.clamp_min(1e-8).log() - p.clamp_min(1e-8).log())).sum(1).mean()


@torch.no_grad()
def heldout_recon_loss(model: YModel, frames: list[torch.Tensor], device: torch.device) -> float:
    """Mean MAE loss over `frames` (each alone, fixed masks: `EVAL_SEED`), model in eval mode."""
    gen = torch.Generator().manual_seed(EVAL_SEED)
    cfg, forward = _ttt_cfg(model), _forward(model)
    values = [float(mae_loss(forward, normalize(f[None].to(device), model.cfg), cfg, gen)) for f in frames]
    return sum(values) / len(values)


@torch.no_grad()
def agreement(frozen: YModel, model: YModel, frames: list[torch.Tensor], device: torch.device) -> float:
    """Fraction of pixels where the argmax class of `model` equals the frozen model's, over `frames`."""
    same = total = 0
    for f in frames:
        x = with_flag(normalize(f[None].to(device), model.cfg))
        a = semantic_probs(frozen(x, mode="predict")).argmax(1)
        b = semantic_probs(model(x, mode="predict")).argmax(1)
        same += int((a == b).sum())
        total += a.numel()
    return same / max(total, 1)


def _save_state(path: Path, model: YModel, names: list[str], optimizer: torch.optim.Optimizer, step: int,
                gen: torch.Generator, extra: dict[str, Any]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    state = dict(model.state_dict())
    payload = {"weights": {n: state[n].detach().cpu() for n in names}, "optimizer": optimizer.state_dict(),
               "step": step, "generator": gen.get_state(), **extra}
    tmp = path / (STATE_FILE + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path / STATE_FILE)


def _load_state(path: Path, fingerprint: str) -> dict[str, Any] | None:
    file = path / STATE_FILE
    if not file.is_file():
        return None
    try:
        state = torch.load(file, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:  # torn by a crash: start over
        log.warning("cannot read the saved training state %s (%s): starting over", file, exc)
        return None
    if state.get("fingerprint") != fingerprint:
        log.warning("the saved training state in %s is for other arguments or footage: starting over", path)
        return None
    return state


def _lr_factor(step: int, steps: int) -> float:
    return max(0.0, 1.0 - step / steps) ** 0.9


def prepare_model(
    model: YModel,
    frames: Iterable[torch.Tensor],
    out: Path,
    opts: PrepareOptions,
    identity: dict[str, Any],
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train g (and f) on `frames` ((3, H, W) uint8, any size; brought to the working resolution as they come, so
    only those are held in memory), calibrate the guard, write the checkpoint to `out`;
    returns the report (also `out/prepare.json`). `identity` (model source, footage) decides with `opts` whether a
    saved training state is continued."""
    out = Path(out)
    check_out(out, overwrite)
    started = time.perf_counter()
    device = resolve_device(opts.device)
    torch.manual_seed(opts.seed)
    cfg = model.cfg
    work = [to_working_resolution(f, cfg.image_size, cfg.max_size) for f in frames]
    train_idx, held_idx = _split(len(work))
    held = [work[i] for i in held_idx]
    by_size: dict[tuple[int, int], list[int]] = {}
    for i in train_idx:
        by_size.setdefault(tuple(work[i].shape[1:]), []).append(i)
    sizes = sorted(by_size)
    weights = torch.tensor([len(by_size[s]) for s in sizes], dtype=torch.float)

    model = model.to(device).eval()
    frozen = copy.deepcopy(model).requires_grad_(False).eval() if opts.adapt_encoder else None
    fingerprint = _fingerprint(identity, opts, work)
    work_dir = work_dir_for(out)
    state_dir = work_dir / STATE_DIR
    state = _load_state(state_dir, fingerprint)
    names = _trainable(model, opts.adapt_encoder)
    model.requires_grad_(False)
    params = dict(model.named_parameters())
    for n in names:
        params[n].requires_grad_(True)
    optimizer = _optimizer(model, names, opts)
    gen = torch.Generator().manual_seed(opts.seed)
    step, seconds_before = 0, 0.0
    if state is not None:
        model.load_state_dict(state["weights"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        step, before, seconds_before = state["step"], state["before"], state["seconds"]
        log.info("continuing from step %d (%s)", step, state_dir)
    else:
        if work_dir.exists():
            shutil.rmtree(work_dir)
        before = heldout_recon_loss(model, held, device)
    log.info("prepare: %d training and %d held-out frames, %d steps of batch %d on %s (g%s trained)",
             len(train_idx), len(held), opts.steps, opts.batch_size, device, " and f" if opts.adapt_encoder else "")

    cfg_ttt, forward = _ttt_cfg(model), _forward(model)
    bar = tqdm(total=opts.steps, initial=step, desc="prepare", unit="step", dynamic_ncols=True, disable=not progress)
    recent: list[float] = []
    while step < opts.steps:
        size = sizes[int(torch.multinomial(weights, 1, generator=gen))]
        pool = by_size[size]
        picks = torch.randint(len(pool), (opts.batch_size,), generator=gen).tolist()
        x = normalize(torch.stack([work[pool[i]] for i in picks]).to(device), cfg)
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * _lr_factor(step, opts.steps)
        with autocast(device, True):
            loss = mae_loss(forward, x, cfg_ttt, gen)
            if frozen is not None:
                loss = loss + opts.distill_weight * distill_loss(frozen, model, x)
        if not math.isfinite(float(loss.detach())):
            raise FloatingPointError(f"non-finite loss at step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if opts.grad_clip:
            torch.nn.utils.clip_grad_norm_([params[n] for n in names], opts.grad_clip)
        optimizer.step()
        step += 1
        recent = (recent + [float(loss.detach())])[-20:]
        bar.update(1)
        bar.set_postfix(loss=f"{sum(recent) / len(recent):.4f}")
        if step % opts.checkpoint_every == 0 and step < opts.steps:
            _save_state(state_dir, model, names, optimizer, step, gen,
                        {"fingerprint": fingerprint, "before": before,
                         "seconds": seconds_before + time.perf_counter() - started})
    bar.close()

    model.requires_grad_(False).eval()
    after = heldout_recon_loss(model, held, device)
    report: dict[str, Any] = {
        "recon_loss_before": before, "recon_loss_after": after, "steps": step,
        "frames": {"total": len(work), "train": len(train_idx), "held_out": len(held)},
        "adapt_encoder": opts.adapt_encoder, "device": str(device), "options": asdict(opts),
        "source": identity,
    }
    if frozen is not None:
        report["distill_agreement"] = agreement(frozen, model, held, device)
    store_guard_references(model, work)
    cfg.recon_loss_reference = after
    cfg.recon_trained = True
    report["seconds"] = round(seconds_before + time.perf_counter() - started, 2)
    save_checkpoint(model, work_dir, extra={"prepared_steps": step, "adapt_encoder": opts.adapt_encoder})
    (work_dir / REPORT).write_text(json.dumps(report, indent=2))
    shutil.rmtree(state_dir, ignore_errors=True)
    _publish(work_dir, out)
    return report


def _publish(work_dir: Path, out: Path) -> None:
    """Rename the finished `work_dir` to `out` (an existing `out` is replaced only after the rename succeeded)."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.replaced"
        if old.exists():
            shutil.rmtree(old)
        os.replace(out, old)
    try:
        os.replace(work_dir, out)
    except OSError:
        if old is not None:
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
