"""The loss ceiling (issue 12, domain B's haze): skip the step when ℓ_s is far above the model's clean reference,
a shift the reconstruction cannot follow; the loss gate (too easy) keeps working beside it."""

from __future__ import annotations

import copy

import torch

from mask2former_ttt.evaluation.protocol import parse_guard_overrides
from mask2former_ttt.ttt.adapter import StreamAdapter
from mask2former_ttt.ttt.config import ttt_preset


def _cfg(**kw):
    return ttt_preset("full", batch_size=3, micro_batch=3, shift_gate=None, **kw)


def _model(tiny_model, reference: float):
    model = copy.deepcopy(tiny_model)
    model.cfg.recon_loss_reference = reference
    return model


def test_the_ceiling_skips_steps_whose_loss_is_far_above_the_reference(tiny_model, frames) -> None:
    model = _model(tiny_model, 1e-9)  # every loss is above 1e3 x this reference
    capped = StreamAdapter(model, _cfg(loss_ceiling=1e3))
    r = capped.step(frames[0])
    assert r.stats.steps_taken == 0 and r.stats.loss is not None and r.stats.loss > 0
    assert all(torch.equal(p, capped.theta0[n]) for n, p in capped.params.items())
    assert StreamAdapter(model, _cfg()).step(frames[0]).stats.steps_taken == 1  # off by default


def test_a_loss_under_the_ceiling_steps(tiny_model, frames) -> None:
    model = _model(tiny_model, 1.0)
    assert StreamAdapter(model, _cfg(loss_ceiling=1e9)).step(frames[0]).stats.steps_taken == 1
    # both bounds together: the loss gate still skips a loss under it
    assert StreamAdapter(model, _cfg(loss_gate=1e6, loss_ceiling=1e9)).step(frames[0]).stats.steps_taken == 0


def test_loss_ceiling_is_a_guard_field() -> None:
    assert parse_guard_overrides(["loss_ceiling=4"]) == {"loss_ceiling": 4}
