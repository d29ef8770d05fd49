"""The TTT step's bookkeeping: no gradient buffers kept between frames, the global RNG untouched, the shared
model left in eval mode, and the memory estimate equal to what a stream really holds."""

from __future__ import annotations

import pytest
import torch

from mask2former_ttt.ttt import build_adapter
from mask2former_ttt.ttt.frames import to_working_resolution


def _online(model, **kw):
    return build_adapter(model, "online", "full", batch_size=2, micro_batch=2, guard=None, **kw)


def test_no_grad_buffers_are_kept_between_frames(tiny_model, frames) -> None:
    a = _online(tiny_model)
    for f in frames[:2]:
        assert a.step(f).stats.steps_taken == 1
    assert a.params and all(p.grad is None for p in a.params.values())
    held = a.memory_bytes()
    a.params[next(iter(a.params))].grad = torch.ones_like(next(iter(a.params.values())))
    assert a.memory_bytes() > held  # gradient buffers count while they exist


def test_rollback_paths_free_gradients_too(tiny_model, frames) -> None:
    calls = {"n": 0}

    def exploding(forward, x, cfg, generator):
        from mask2former_ttt.ttt.objectives import mae_loss

        calls["n"] += 1
        loss = mae_loss(forward, x, cfg, generator)
        return loss * float("nan") if calls["n"] == 2 else loss

    from mask2former_ttt.ttt.adapter import StreamAdapter
    from mask2former_ttt.ttt.config import ttt_preset

    cfg = ttt_preset("full", batch_size=2, micro_batch=2, guard=None)
    a = StreamAdapter(tiny_model, cfg, objective=exploding)
    a.step(frames[0])
    r = a.step(frames[1])
    assert r.stats.rolled_back and all(p.grad is None for p in a.params.values())


def test_a_step_leaves_the_global_rng_and_the_models_mode_alone(tiny_model, frames) -> None:
    a = _online(tiny_model)
    tiny_model.eval()
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a.step(frames[0])
    assert torch.equal(torch.get_rng_state(), state)  # drop-path drew from this stream's own seeding
    assert not tiny_model.training and not any(m.training for m in tiny_model.modules())


def test_two_streams_with_the_same_seed_take_identical_steps_whatever_runs_between(tiny_model, frames) -> None:
    a, b = _online(tiny_model), _online(tiny_model)
    other = build_adapter(tiny_model, "online", "release", batch_size=2, micro_batch=2, seed=7)
    ra = a.step(frames[0])
    other.step(frames[1])  # another stream's step (and its drop-path draws) in between
    torch.rand(5)  # and someone else's use of the global RNG
    rb = b.step(frames[0])
    assert torch.equal(ra.class_logits, rb.class_logits) and ra.stats.loss == rb.stats.loss


def test_estimate_matches_the_streams_own_tensors_once_the_window_is_full(tiny_model, frames) -> None:
    a = _online(tiny_model, window=4)
    for f in frames[:5]:
        a.step(f)
    hw = tuple(to_working_resolution(frames[0], tiny_model.cfg.image_size).shape[1:])
    # within 0.1 %: the estimate gives every adapted tensor an optimizer buffer; SGD creates none for the few
    # tensors the reconstruction loss sends no gradient to (2 KiB on the tiny model)
    assert abs(a.memory_bytes() - a.estimated_memory_bytes(hw)) <= 1e-3 * a.estimated_memory_bytes(hw)


@pytest.mark.parametrize("name", ["tiny", "swin-s"])
def test_the_model_ties_no_tensors_so_functional_call_may_skip_the_tie_search(name):
    """`StreamAdapter` calls functional_call with tie_weights=False: correct only while no tensor is shared."""
    from model.config import preset
    from model.ymodel import build_model

    model = build_model(preset(name, image_size=64))
    assert len(list(model.named_parameters(remove_duplicate=False))) == len(list(model.named_parameters()))
    assert len(list(model.named_buffers(remove_duplicate=False))) == len(list(model.named_buffers()))


def test_clip_grad_norm_scales_only_above_the_limit_and_matches_torch():
    from mask2former_ttt.ttt.adapter import clip_grad_norm

    def grads(scale: float) -> list[torch.Tensor]:
        out = []
        for shape in [(3, 4), (5,)]:
            p = torch.zeros(shape, requires_grad=True)
            p.grad = torch.arange(p.numel(), dtype=torch.float32).reshape(shape) * scale
            out.append(p)
        return out

    big, ref = grads(1.0), grads(1.0)
    total = clip_grad_norm(big, 1.0)
    want = torch.nn.utils.clip_grad_norm_(ref, 1.0)
    torch.testing.assert_close(total, want)
    for a, b in zip(big, ref):
        torch.testing.assert_close(a.grad, b.grad)
    small = grads(1e-4)
    before = [p.grad.clone() for p in small]
    assert float(clip_grad_norm(small, 1.0)) < 1.0
    assert all(torch.equal(p.grad, g) for p, g in zip(small, before))  # untouched below the limit
    unlimited = grads(1.0)
    clip_grad_norm(unlimited, None)
    assert torch.equal(unlimited[0].grad, grads(1.0)[0].grad)
    nan = grads(1.0)
    nan[0].grad[0, 0] = float("nan")
    assert not torch.isfinite(clip_grad_norm(nan, 1.0))  # reported, for the rollback
