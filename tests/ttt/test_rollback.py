"""Divergence safety: which losses and gradients roll a stream back, and where to.

The adapter is driven deterministically by a scripted objective: the MAE loss, rescaled or poisoned on chosen
calls (one call per frame: steps_per_frame 1, one micro-batch).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from mask2former_ttt.ttt import StreamAdapter, ttt_preset
from mask2former_ttt.ttt.divergence import EXPLODE_FACTOR, WARMUP_FRAMES
from mask2former_ttt.ttt.objectives import mae_loss

Edit = Callable[[torch.Tensor], torch.Tensor]


class _NanGrad(torch.autograd.Function):
    """Identity forward, NaN gradient backward: a finite loss with a non-finite gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad * float("nan")


class Scripted:
    """The MAE objective with `plan[call](loss)` applied on chosen calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.plan: dict[int, Edit] = {}

    def __call__(self, forward, x, cfg, generator) -> torch.Tensor:
        loss = mae_loss(forward, x, cfg, generator)
        edit = self.plan.get(self.calls)
        self.calls += 1
        return edit(loss) if edit else loss


def _adapter(model, objective: Scripted, **overrides) -> StreamAdapter:
    cfg = ttt_preset("full", batch_size=2, micro_batch=2, **overrides)
    return StreamAdapter(model, cfg, seed=0, objective=objective)


def _to(target: Callable[[], float]) -> Edit:
    """Rescale the loss so that its value is `target()` (read when the loss is computed)."""
    return lambda loss: loss * (target() / loss.detach())


def _snapshot(a: StreamAdapter) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in a.params.items()}


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(a[n], b[n]) for n in a)


def _theta0(a: StreamAdapter) -> dict[str, torch.Tensor]:
    return {n: t.detach() for n, t in a.theta0.items()}


def _run(a: StreamAdapter, frames, n: int):
    return [a.step(frames[i % len(frames)]) for i in range(n)]


def test_loss_above_explode_factor_times_running_mean_rolls_back_to_theta0(tiny_model, frames):
    obj = Scripted()
    a = _adapter(tiny_model, obj)
    factor = EXPLODE_FACTOR
    obj.plan[WARMUP_FRAMES] = _to(lambda: 0.9 * factor * a.divergence.level)  # below the bound: a normal step
    obj.plan[WARMUP_FRAMES + 1] = _to(lambda: 1.1 * factor * a.divergence.level)  # above it: rollback
    results = _run(a, frames, WARMUP_FRAMES + 1)
    assert not any(r.stats.rolled_back for r in results) and a.rollbacks == 0
    assert results[-1].stats.steps_taken == 1
    before = _snapshot(a)
    assert not _equal(before, _theta0(a))
    r = a.step(frames[(WARMUP_FRAMES + 1) % len(frames)])
    assert r.stats.rolled_back and r.stats.rollbacks == 1 and a.rollbacks == 1 and r.stats.steps_taken == 0
    assert _equal(_snapshot(a), _theta0(a)), "back at θ0"
    assert a.optimizer is None or not a.optimizer.state, "optimizer state dropped"
    r = a.step(frames[0])
    assert not r.stats.rolled_back and r.stats.steps_taken == 1 and a.rollbacks == 1


def test_loss_spike_during_warmup_is_not_a_divergence(tiny_model, frames):
    obj = Scripted()
    a = _adapter(tiny_model, obj)
    obj.plan[1] = _to(lambda: 100 * EXPLODE_FACTOR * a.divergence.level)
    results = _run(a, frames, 3)
    assert a.rollbacks == 0 and all(r.stats.steps_taken == 1 for r in results)


def test_non_finite_loss_rolls_back_even_during_warmup(tiny_model, frames, caplog):
    obj = Scripted()
    a = _adapter(tiny_model, obj)
    obj.plan[2] = lambda loss: loss * float("nan")
    _run(a, frames, 2)
    mean = a.divergence.level
    assert not _equal(_snapshot(a), _theta0(a))
    with caplog.at_level(logging.WARNING, logger="mask2former_ttt.ttt.adapter"):
        r = a.step(frames[2])
    assert r.stats.rolled_back and a.rollbacks == 1 and r.stats.steps_taken == 0
    assert "reason=loss nan" in caplog.text, "caught as a non-finite loss, before any gradient is used"
    assert _equal(_snapshot(a), _theta0(a)) and a.divergence.level == mean
    r = a.step(frames[3])
    assert not r.stats.rolled_back and torch.isfinite(r.mask_logits).all()


def test_non_finite_gradient_rolls_back(tiny_model, frames, caplog):
    obj = Scripted()
    a = _adapter(tiny_model, obj)
    obj.plan[2] = _NanGrad.apply
    _run(a, frames, 2)
    mean = a.divergence.level
    with caplog.at_level(logging.WARNING, logger="mask2former_ttt.ttt.adapter"):
        r = a.step(frames[2])
    assert r.stats.rolled_back and a.rollbacks == 1 and r.stats.steps_taken == 0
    assert "reason=gradient norm" in caplog.text
    assert _equal(_snapshot(a), _theta0(a)) and a.divergence.level == mean
    assert all(torch.isfinite(p).all() for p in a.params.values())
