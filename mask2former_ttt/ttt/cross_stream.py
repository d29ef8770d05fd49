"""Several streams in one call: their predictions in one `torch.func.vmap` over their stacked tensors, and their
TTT steps in one vmapped `grad`, with each stream's result equal (allclose) to its serial `StreamAdapter.step`.

Every stream of a lane runs the same shared network with its own adapted tensors, so N streams' forwards differ
only in those tensors: stacked to (N, ...) they make one batched call (`vmap` over `functional_call`), which on a
GPU fills the device where N small calls leave it idle. Each stream's randomness is drawn beforehand from its own
generator, in the order the serial step draws it (samples, then the patch mask, then drop-path, replayed through
`model.stochastic_depth.drop_path_plan`); everything after the gradient (divergence check, clipping, optimizer,
pull toward θ0) runs per stream (`StreamAdapter.apply_gradient`: flat, a few operator calls).

The loss is the serial step's own objective (`MAEObjective.given_mask`, ttt/objectives.py: MAE plus the guard's
feature-alignment term), called inside the vmapped gradient with each stream's patch mask drawn beforehand.

What can be batched (`batch_key`): plain online TTT-MAE streams (`StreamAdapter` with an `MAEObjective`) on the
same model replica, with the same configuration and working resolution, one step of one micro-batch per frame,
whole frames as samples (no augmentation: each stream's samples must have one shape) and no fp16 grad scaler.
Anything else goes through the serial path. On the CPU a batched call is about as fast as N serial
ones (SDPA has no CPU batching rule under vmap and falls back to a loop; docs/benchmark/cross_stream_cpu.json: 0.81-
1.05x for 2-4 streams on one thread, 1.11-1.19x in `m2f-ttt bench`), so the service turns this on for CUDA only
unless asked (`M2F_WORKER_CROSS_STREAM_BATCH`).
"""

from __future__ import annotations

import threading
import time
import weakref
from dataclasses import dataclass
from typing import Hashable

import torch
from torch.func import functional_call, grad_and_value, vmap

from model.device import autocast
from model.masking import normalize, with_flag
from model.stochastic_depth import drop_path_plan, draw_keeps
from model.ymodel import YModel
from mask2former_ttt.ttt.adapter import StreamAdapter
from mask2former_ttt.ttt.objectives import MAEObjective, draw_visible
from mask2former_ttt.ttt.stats import StepResult, StepStats, Theta0View

Calls = list[tuple[tuple[int, ...], float]]
_DROP_PATH_CALLS: "weakref.WeakKeyDictionary[YModel, dict[tuple, Calls]]" = weakref.WeakKeyDictionary()
_DROP_PATH_LOCK = threading.Lock()


def batch_key(adapter: object, frame_hw: tuple[int, int]) -> Hashable | None:
    """The key under which `adapter`'s frame of working size `frame_hw` can share a batched call with others, or
    None when it must run serially (see the module docstring)."""
    if type(adapter) is not StreamAdapter or type(adapter.objective) is not MAEObjective:
        return None
    cfg = adapter.cfg
    if (cfg.steps_per_frame != 1 or cfg.micro_batch < cfg.batch_size or adapter.augment != "none" or cfg.compile
            or adapter.scaler is not None):
        return None
    return (id(adapter.model), cfg.model_dump_json(), tuple(adapter.names), frame_hw)


def _stacked(adapters: list[StreamAdapter], for_prediction: bool = False) -> dict[str, torch.Tensor]:
    """name -> (N, ...) the streams' current tensors (θ0's for a stream that has not stepped yet), detached; with
    `for_prediction`, what each stream predicts with (`StreamAdapter.prediction_tensors`, θ0's where empty)."""
    names = adapters[0].names
    current = [(a.prediction_tensors() if for_prediction else a.params) or a.theta0 for a in adapters]
    return {n: torch.stack([c[n].detach() for c in current]) for n in names}


def _functional(model: YModel, params: dict[str, torch.Tensor], x: torch.Tensor, mode: str):
    return functional_call(model, params, (x,), {"mode": mode}, strict=False, tie_weights=False)


@torch.no_grad()
def predict_many(
    adapters: list[StreamAdapter], xs: list[torch.Tensor], views: list[Theta0View]
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """xs[i]: (3, h, w) uint8 of stream i (one shape), views[i] θ0's view of it -> per stream (class logits
    (Q, K+1), mask logits (Q, h/4, w/4)) with its own tensors, as `adapters[i].predict(xs[i], views[i])` gives
    them: the streams whose confidence gate already made this frame's θ0 prediction hand it over, the others run in
    one vmapped call."""
    known = [a.take_theta0_prediction(v) for a, v in zip(adapters, views)]
    todo = [i for i, k in enumerate(known) if k is None]
    fresh = iter(_predict_batched([adapters[i] for i in todo], [xs[i] for i in todo], [views[i] for i in todo])
                 if todo else [])
    return [k if k is not None else next(fresh) for k in known]


def _predict_batched(
    adapters: list[StreamAdapter], xs: list[torch.Tensor], views: list[Theta0View]
) -> list[tuple[torch.Tensor, torch.Tensor]]:
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
    for a, v, (c, m) in zip(adapters, views, results):
        a.guard.remember(v, c, m, a.predicts_with_theta0)
    return results


def _drop_path_calls(model: YModel, sample: torch.Tensor, aligned: bool = False) -> Calls:
    """The (shape, drop_prob) of each drop-path call of one TTT forward on `sample` ((b, 4, h, w)) (with `aligned`:
    then f's forward for the feature-alignment term, as the objective runs them), recorded once per model replica,
    input shape and kind (forwards without gradients)."""
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


def adapt_many(adapters: list[StreamAdapter], stats: list[StepStats], views: list[Theta0View] | None = None) -> None:
    """Each adapter's `adapt(stats[i], views[i])` (views: θ0's views of the windows' newest frames, default none
    made yet), with the TTT steps of those the guard lets step taken in one vmapped gradient call per sample shape
    (a stream whose window still holds frames of an earlier size can draw one). The adapters share a `batch_key`."""
    views = views if views is not None else [Theta0View() for _ in adapters]
    ready = [(a, s) for a, s, v in zip(adapters, stats, views) if a.begin_adapt(s, v)]
    by_shape: dict[tuple[int, ...], list[_Sampled]] = {}
    for a, s in ready:  # each stream's draws in its serial order: samples, patch mask, drop-path
        batch, _ = a.sample_batch(s)
        visible = draw_visible(batch, a.cfg, a.generator)
        aligned = a.objective.alignment is not None
        keep = draw_keeps(_drop_path_calls(a.model, with_flag(batch, visible), aligned), a.generator).to(batch.device)
        by_shape.setdefault(tuple(batch.shape), []).append(_Sampled(a, s, batch, visible, keep))
    for group in by_shape.values():
        _step_group(group)


def _step_group(group: list[_Sampled]) -> None:
    """One vmapped gradient call for `group` (samples of one shape), then each stream's own update."""
    first = group[0].adapter
    model, cfg, objective = first.model, first.cfg, first.objective

    def loss_of(params: dict[str, torch.Tensor], x: torch.Tensor, visible: torch.Tensor,
                keep: torch.Tensor) -> torch.Tensor:
        def forward(inp: torch.Tensor, mode: str):
            with autocast(first.device, first.use_amp):
                return _functional(model, params, inp, mode)

        with drop_path_plan(keep):
            return objective.given_mask(forward, x, visible, cfg)

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
    works = [a.begin_frame(f) for a, f in zip(adapters, frames)]
    due = [(a, w) for a, w in zip(adapters, works) if w.due]
    if due:
        adapt_many([a for a, _ in due], [w.stats for _, w in due], [w.view for _, w in due])
    t0 = time.perf_counter()
    preds = predict_many(adapters, [w.x for w in works], [w.view for w in works])
    share = (time.perf_counter() - t0) / len(adapters)
    return [a.end_frame(w, c, m, share) for a, w, (c, m) in zip(adapters, works, preds)]


def finish_pending_many(adapters: list[StreamAdapter]) -> None:
    """Every pipelined stream's deferred step (`finish_pending`), taken in one batched call."""
    owed = [(a, o) for a in adapters if (o := a.take_pending()) is not None]
    if owed:
        adapt_many([a for a, _ in owed], [o[0] for _, o in owed], [o[1] for _, o in owed])
