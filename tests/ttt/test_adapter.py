"""The per-stream adapter: adaptation, reset, isolation, safety and state I/O on the tiny model."""

from __future__ import annotations

import torch

from mask2former_ttt.ttt import build_adapter
from model.ymodel import HEAD_PREFIX


def _snapshot(adapter) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in adapter.params.items()}


def test_online_keeps_adapting_and_reset_restores_theta0(tiny_model, frames):
    a = build_adapter(tiny_model, "online", "full")
    a.step(frames[0])
    after1 = _snapshot(a)
    a.step(frames[1])
    after2 = _snapshot(a)
    theta0 = {n: t.detach().clone() for n, t in a.theta0.items()}
    assert any(not torch.equal(after1[n], theta0[n]) for n in theta0)
    assert any(not torch.equal(after1[n], after2[n]) for n in theta0), "weights must keep changing frame to frame"
    a.reset()
    a.step(frames[0])  # re-creates params from θ0; compare the fresh copy before any step
    b = build_adapter(tiny_model, "online", "full")
    b.step(frames[0])
    assert all(torch.equal(a.params[n], b.params[n]) for n in theta0)
    a.reset()
    a.ensure_params()
    assert all(torch.equal(a.params[n], theta0[n]) for n in theta0)


def test_h_unchanged_after_100_steps_and_window_bounded(tiny_model, frames):
    head0 = {n: p.detach().clone() for n, p in tiny_model.named_parameters() if n.startswith(HEAD_PREFIX)}
    a = build_adapter(tiny_model, "online", "full", window=4, batch_size=2, micro_batch=2)
    for i in range(100):
        a.step(frames[i % len(frames)])
        assert len(a.window) <= 4
    assert not any(n.startswith(HEAD_PREFIX) for n in a.params)
    assert all(torch.equal(p, head0[n]) for n, p in tiny_model.named_parameters() if n.startswith(HEAD_PREFIX))


def test_seeded_runs_reproduce(tiny_model, frames):
    outs = []
    for _ in range(2):
        a = build_adapter(tiny_model, "online", "full", seed=3)
        outs.append([a.step(f).mask_logits for f in frames[:3]])
    assert all(torch.equal(x, y) for x, y in zip(*outs))


def test_injected_nan_rolls_back_and_stream_keeps_working(tiny_model, frames):
    a = build_adapter(tiny_model, "online", "full")
    a.step(frames[0])
    a.step(frames[1])
    name = next(iter(a.params))
    with torch.no_grad():
        a.params[name].fill_(float("nan"))
    r = a.step(frames[2])
    assert r.stats.rolled_back and a.rollbacks == 1
    assert all(torch.isfinite(p).all() for p in a.params.values())
    r = a.step(frames[3])
    assert not r.stats.rolled_back and r.stats.loss is not None
    assert torch.isfinite(r.mask_logits).all()


def test_state_dict_round_trip_gives_identical_next_prediction(tiny_model, frames):
    a = build_adapter(tiny_model, "online", "full", seed=1)
    for f in frames[:3]:
        a.step(f)
    state = a.state_dict()
    expected = a.step(frames[3])
    b = build_adapter(tiny_model, "online", "full", seed=99)
    b.load_state_dict(state)
    got = b.step(frames[3])
    assert torch.equal(expected.mask_logits, got.mask_logits)
    assert torch.equal(expected.class_logits, got.class_logits)


def test_two_adapters_are_independent(tiny_model, frames):
    a = build_adapter(tiny_model, "online", "full")
    b = build_adapter(tiny_model, "online", "full")
    b.step(frames[0])
    b_before = _snapshot(b)
    for f in frames[1:5]:
        a.step(torch.flip(f, dims=[2]))
    assert all(torch.equal(b.params[n], b_before[n]) for n in b_before)
    assert any(not torch.equal(a.params[n], b.params[n]) for n in b_before)


def test_memory_bytes_matches_tensors_and_is_about_twice_fg_for_sgd(tiny_model, frames):
    a = build_adapter(tiny_model, "online", "full", optimizer="sgd")
    for f in frames[:3]:
        a.step(f)
    fg = sum(p.numel() * p.element_size() for n, p in tiny_model.named_parameters() if n in a.names)
    window = sum(t.numel() * t.element_size() for t in a.window)
    momentum = sum(
        s["momentum_buffer"].numel() * s["momentum_buffer"].element_size() for s in a.optimizer.state.values()
    )
    assert a.memory_bytes() == fg + momentum + window
    assert abs((a.memory_bytes() - window) / fg - 2.0) < 0.01  # params that get no gradient have no buffer
    assert a.estimated_memory_bytes(frames[0].shape[1:]) >= a.memory_bytes() - 1


def test_no_memory_resets_each_frame(tiny_model, frames):
    """Every frame starts from θ0 with only itself in the window: frame t's prediction is exactly that of a
    fresh adapter stepped once on frame t from the same RNG state."""
    a = build_adapter(tiny_model, "no_memory", "full", batch_size=2, micro_batch=2)
    for f in frames[:2]:
        a.step(f)
        assert len(a.window) == 1
        assert a.optimizer is None  # re-created every frame
    assert any(not torch.equal(a.params[n], a.theta0[n]) for n in a.theta0), "it adapted on frame 2"
    fresh = build_adapter(tiny_model, "no_memory", "full", batch_size=2, micro_batch=2)
    fresh.generator.set_state(a.generator.get_state())
    got, want = a.step(frames[2]), fresh.step(frames[2])
    assert len(a.window) == 1
    assert torch.equal(got.mask_logits, want.mask_logits) and torch.equal(got.class_logits, want.class_logits)
    assert all(torch.equal(a.params[n], fresh.params[n]) for n in a.theta0)
