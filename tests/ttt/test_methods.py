"""Every comparison method runs behind the same interface; the baselines do what their names say."""

from __future__ import annotations

import pytest
import torch

from mask2former_ttt.ttt import METHODS, build_adapter, ttt_preset
from mask2former_ttt.ttt.baselines import ClassBalanceReset, TemporalSmoothing


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_steps_and_resets(tiny_model, frames, method):
    a = build_adapter(tiny_model, method, "full", batch_size=2, micro_batch=2)
    if a.needs_whole_video:
        a.prepare(frames[:3])
    results = [a.step(f) for f in frames[:3]]
    q = tiny_model.cfg.head.num_queries
    for r in results:
        assert r.class_logits.shape == (q, tiny_model.cfg.num_classes + 1)
        assert r.mask_logits.shape[0] == q and torch.isfinite(r.mask_logits).all()
        assert r.stats.predict_s > 0
    a.reset()
    assert a.memory_bytes() >= 0


def test_main_only_matches_the_fixed_model(tiny_model, frames):
    a = build_adapter(tiny_model, "main_only")
    r = a.step(frames[0])
    from mask2former_ttt.ttt.frames import to_working_resolution
    from model.masking import normalize, with_flag

    x = to_working_resolution(frames[0], tiny_model.cfg.image_size)
    with torch.no_grad():
        ref = tiny_model.predict(with_flag(normalize(x[None], tiny_model.cfg)))
    assert torch.equal(r.class_logits, ref.class_logits[0]) and r.stats.loss is None


def test_tent_adapts_only_encoder_norms(tiny_model, frames):
    a = build_adapter(tiny_model, "tent", "full", lr=1e-2)
    a.step(frames[0])
    assert a.params and all(n.startswith("encoder.") and ("norm" in n or "layernorm" in n) for n in a.params)
    assert any(not torch.equal(a.params[n], a.theta0[n]) for n in a.params)


def test_offline_trains_before_predicting_and_then_stays_fixed(tiny_model, frames):
    a = build_adapter(tiny_model, "offline_all_frames", "full", batch_size=2, micro_batch=2)
    a.prepare(frames[:4])
    w = {n: p.detach().clone() for n, p in a.params.items()}
    assert any(not torch.equal(w[n], a.theta0[n]) for n in w)
    a.step(frames[0])
    assert all(torch.equal(w[n], a.params[n]) for n in w)


def test_ln_adapt_changes_predictions_without_training(tiny_model, frames):
    a = build_adapter(tiny_model, "ln_adapt")
    for f in frames[:3]:
        r = a.step(f)
    b = build_adapter(tiny_model, "main_only")
    ref = b.step(frames[2])
    assert not a.params and not torch.allclose(r.mask_logits, ref.mask_logits)


def test_temporal_smoothing_averages_probabilities(tiny_model, frames):
    a = TemporalSmoothing(build_adapter(tiny_model, "main_only"), span=2)
    r0 = a.step(frames[0]).mask_logits.sigmoid()
    raw1 = build_adapter(tiny_model, "main_only").step(frames[1]).mask_logits.sigmoid()
    r1 = a.step(frames[1]).mask_logits.sigmoid()
    assert torch.allclose(r1, (r0 + raw1) / 2, atol=1e-4)


def test_class_balance_reset_resets_on_drift(tiny_model, frames):
    a = ClassBalanceReset(build_adapter(tiny_model, "online", "full", lr=0.5), max_drift=0)
    r = a.step(frames[0])  # drift >= 0 always: every frame resets to θ0
    assert r.stats.reset
    assert not a.inner.params and a.inner.optimizer is None, "adapted tensors and optimizer dropped"
    a.inner.ensure_params()  # what the next frame starts from
    assert a.inner.params and all(torch.equal(p, a.inner.theta0[n]) for n, p in a.inner.params.items())


def test_presets_match_the_release_and_validate():
    rel = ttt_preset("release")
    assert (rel.optimizer, rel.lr, rel.backbone_lr_mult, rel.weight_decay, rel.grad_clip) == ("adamw", 1e-4, 0.1, 0.05, 0.01)
    assert rel.reset_optimizer_each_frame and rel.batch_size == 32 and rel.window == 16 and rel.mask_ratio == 0.85
    with pytest.raises(ValueError):
        ttt_preset("nope")
    with pytest.raises(ValueError):
        build_adapter(None, "nope")  # type: ignore[arg-type]
