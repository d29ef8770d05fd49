"""Several streams in one call: their predictions in one `torch.func.vmap` over their stacked tensors, and their
TTT steps in one vmapped `grad`, with each stream's result equal (allclose) to its serial `StreamAdapter.step`.

Every stream of a lane runs the same shared network with its own adapted tensors, so N streams' forwards differ
only in those tensors: stacked to (N, ...) they make one batched call (`vmap` over `functional_call`), which on a
GPU fills the device where N small calls leave it idle. Each stream's randomness is drawn beforehand from its own
generator, in the order the serial step draws it (samples, then the patch mask, then drop-path, replayed through
`model.stochastic_depth.drop_path_plan`); everything after the gradient (divergence check, clipping, optimizer,
pull toward θ0) runs per stream (`StreamAdapter.apply_gradient`: flat, a few operator calls).

What can be batched (`batch_key`): plain online TTT-MAE streams (`StreamAdapter` with `mae_loss`, with or without
`feature_align`'s term, ttt/feature_align.py) on the same
model replica, with the same configuration and working resolution, one step of one micro-batch per frame, whole
frames as samples (no crop / augmentation: each stream's samples must have one shape), no fp16 grad scaler and no
low-rank deltas. Anything else goes through the serial path. On the CPU a batched call is about as fast as N serial
ones (SDPA has no CPU batching rule under vmap and falls back to a loop; docs/benchmark/cross_stream_cpu.json: 0.81-
1.05x for 2-4 streams on one thread, 1.11-1.19x in `m2f-ttt bench`), so the service turns this on for CUDA only
unless asked (`M2F_CROSS_STREAM_BATCH`).
"""

from __future__ import annotations

import threading
import time
import weakref
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Hashable

import torch
from torch.func import functional_call, grad_and_value, vmap

from model.device import autocast
from model.masking import normalize, random_patch_mask, reconstruction_loss, with_flag
from model.stochastic_depth import drop_path_plan, draw_keeps
from model.ymodel import YModel
from mask2former_ttt.ttt.adapter import StreamAdapter
from mask2former_ttt.ttt.feature_align import alignment_of
from mask2former_ttt.ttt.objectives import mae_loss
from mask2former_ttt.ttt.stats import StepResult, StepStats

Calls = list[tuple[tuple[int, ...], float]]
_DROP_PATH_CALLS: "weakref.WeakKeyDictionary[YModel, dict[tuple, Calls]]" = weakref.WeakKeyDictionary()
_DROP_PATH_LOCK = threading.Lock()


def batch_key(adapter: object, frame_hw: tuple[int, int]) -> Hashable | None:
    """The key under which `adapter`'s frame of working size `frame_hw` can share a batched call with others, or
    None when it must run serially (see the module docstring)."""
    if type(adapter) is not StreamAdapter or alignment_of(adapter.objective)[0] is not mae_loss:
        return None
    cfg = adapter.cfg
    if (cfg.steps_per_frame != 1 or cfg.micro_batch < cfg.batch_size or cfg.crop is not None or adapter.augment != "none"
            or cfg.adapt_scope == "lowrank" or cfg.compile or adapter.scaler is not None):
        return None
    return (id(adapter.model), cfg.model_dump_json(), tuple(adapter.names), frame_hw)


def _stacked(adapters: list[StreamAdapter], for_prediction: bool = False) -> dict[str, torch.Tensor]:
    """name -> (N, ...) the streams' current tensors (θ0's for a stream that has not stepped yet), detached; with
    `for_prediction`, what each stream predicts with (`StreamAdapter.prediction_tensors`)."""
    names = adapters[0].names
    current = [(a.prediction_tensors() if for_prediction else a.params) or a.theta0 for a in adapters]
    return {n: torch.stack([c[n].detach() for c in current]) for n in names}


def _functional(model: YModel, params: dict[str, torch.Tensor], x: torch.Tensor, mode: str):
    return functional_call(model, params, (x,), {"mode": mode}, strict=False, tie_weights=False)


@torch.no_grad()
def predict_many(adapters: list[StreamAdapter], xs: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """xs[i]: (3, h, w) uint8 of stream i (one shape) -> per stream (class logits (Q, K+1), mask logits
    (Q, h/4, w/4)) with its own tensors, as `adapters[i].predict(xs[i])` gives them: the streams whose confidence
    gate already made this frame's θ0 prediction hand it over, the others run in one vmapped call."""
    known = [a.take_theta0_prediction(x) for a, x in zip(adapters, xs)]
    todo = [i for i, k in enumerate(known) if k is None]
    fresh = iter(_predict_batched([adapters[i] for i in todo], [xs[i] for i in todo]) if todo else [])
    return [k if k is not None else next(fresh) for k in known]


def _predict_batched(adapters: list[StreamAdapter], xs: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`predict_many` for streams that all need a forward: one vmapped call over their own tensors."""
    model = adapters[0].model
    cfg = model.cfg
    inputs = torch.stack([with_flag(normalize(x[None], cfg)) for x in xs])  # (N, 1, 4, h, w)

    def one(params: dict[str, torch.Tensor], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with autocast(adapters[0].device, adapters[0].use_amp):
            out = _functional(model, params, x, "predict")
        return out.class_logits[0], out.mask_logits[0]

    class_logits, mask_logits = vmap(one)(_stacked(adapters, for_prediction=True), inputs)
    results = [(c.float(), m.float()) for c, m in zip(class_logits, mask_logits)]
    for a, x, (c, m) in zip(adapters, xs, results):
        a.remember_prediction(x, c, m)
    return results


def _drop_path_calls(model: YModel, sample: torch.Tensor, aligned: bool = False) -> Calls:
    """The (shape, drop_prob) of each drop-path call of one TTT forward on `sample` ((b, 4, h, w)) (with `aligned`:
    then f's forward for the feature-alignment term, as the serial objective runs them), recorded once per model
    replica, input shape and kind (forwards without gradients)."""
    with _DROP_PATH_LOCK:
        known = _DROP_PATH_CALLS.setdefault(model, {})
    key = (*sample.shape, aligned)
    if key not in known:  # lanes record on their own replicas: no two threads fill one entry
        with torch.no_grad(), drop_path_plan() as plan:
            model(sample, mode="reconstruct")
            if aligned:
                model(sample, mode="encode")
        known[key] = plan.calls
    return known[key]


@dataclass
class _Sampled:
    """One stream's drawn step: samples (B, 3, h, w), patch mask (B, 1, h, w), drop-path keeps (n_calls, B)."""

    adapter: StreamAdapter
    stats: StepStats
    batch: torch.Tensor
    visible: torch.Tensor
    keep: torch.Tensor


def adapt_many(adapters: list[StreamAdapter], stats: list[StepStats]) -> None:
    """Each adapter's `adapt(stats[i])`, with the TTT steps of those whose shift gate is open taken in one vmapped
    gradient call per sample shape (a stream whose window still holds frames of an earlier size can draw one). The
    adapters share a `batch_key`."""
    ready = [(a, s) for a, s in zip(adapters, stats) if a.begin_adapt(s)]
    by_shape: dict[tuple[int, ...], list[_Sampled]] = {}
    for a, s in ready:  # each stream's draws in its serial order: samples, patch mask, drop-path
        batch, _ = a.sample_batch(s)
        cfg = a.cfg
        visible = random_patch_mask(batch.shape[0], batch.shape[2], batch.shape[3], cfg.mask_patch, cfg.mask_ratio,
                                    a.generator).to(batch.device)
        if cfg.drop_path:
            aligned = alignment_of(a.objective)[1] is not None
            keep = draw_keeps(_drop_path_calls(a.model, with_flag(batch, visible), aligned), a.generator)
            keep = keep.to(batch.device)
        else:
            keep = batch.new_zeros(1)  # unused: no drop-path
        by_shape.setdefault(tuple(batch.shape), []).append(_Sampled(a, s, batch, visible, keep))
    for group in by_shape.values():
        _step_group(group)


def _step_group(group: list[_Sampled]) -> None:
    """One vmapped gradient call for `group` (samples of one shape), then each stream's own update."""
    first = group[0].adapter
    model, cfg = first.model, first.cfg
    _, targets, weight = alignment_of(first.objective)

    def loss_of(params: dict[str, torch.Tensor], x: torch.Tensor, visible: torch.Tensor,
                keep: torch.Tensor) -> torch.Tensor:
        with drop_path_plan(keep) if cfg.drop_path else nullcontext():
            with autocast(first.device, first.use_amp):
                pred = _functional(model, params, with_flag(x, visible), "reconstruct")
            loss = reconstruction_loss(pred, x, visible, cfg.loss_on, None)
            if targets is not None:  # feature_align's term, after the MAE forward as in the serial objective
                with autocast(first.device, first.use_amp):
                    maps = _functional(model, params, with_flag(x), "encode")
                loss = loss + weight * targets.loss(maps)
        return loss

    t0 = time.perf_counter()
    grads, losses = vmap(grad_and_value(loss_of))(
        _stacked([g.adapter for g in group]),
        torch.stack([g.batch for g in group]),
        torch.stack([g.visible for g in group]),
        torch.stack([g.keep for g in group]),
    )
    losses_f = losses.float().tolist()  # one device sync for all streams
    share = (time.perf_counter() - t0) / len(group)
    for i, g in enumerate(group):
        a, s, loss = g.adapter, g.stats, losses_f[i]
        s.ttt_forward_s += share  # forward and backward are one call here
        if not a.gated(loss):
            assert a.flat is not None
            try:
                a.flat.set_grad({n: grad[i] for n, grad in grads.items()})
                a.apply_gradient(loss, s)
            finally:
                a.flat.free_grad()
        a.end_adapt([loss], s)


def step_many(adapters: list[StreamAdapter], frames: list[torch.Tensor]) -> list[StepResult]:
    """`adapters[i].step(frames[i])` for every stream, batched: the steps due before prediction in one call, the
    predictions in one call. Pipelined streams' steps stay pending, for `finish_pending_many` after the results
    are sent. The adapters share a `batch_key` (so their working-resolution frames have one shape)."""
    begun = [a.begin_frame(f) for a, f in zip(adapters, frames)]
    due = [(a, s) for a, (_, s, d) in zip(adapters, begun) if d]
    if due:
        adapt_many([a for a, _ in due], [s for _, s in due])
    t0 = time.perf_counter()
    preds = predict_many(adapters, [x for x, _, _ in begun])
    share = (time.perf_counter() - t0) / len(adapters)
    return [a.end_frame(x, s, c, m, share) for a, (x, s, _), (c, m) in zip(adapters, begun, preds)]


def finish_pending_many(adapters: list[StreamAdapter]) -> None:
    """Every pipelined stream's deferred step (`finish_pending`), taken in one batched call."""
    owed = [(a, s) for a in adapters if (s := a.take_pending()) is not None]
    if owed:
        adapt_many([a for a, _ in owed], [s for _, s in owed])
