"""The cost levers of `TTTConfig`: a step every n-th frame, pipelined prediction."""

from __future__ import annotations

import torch

from mask2former_ttt.ttt import build_adapter
from mask2former_ttt.ttt.frames import to_working_resolution

SMALL = {"batch_size": 2, "micro_batch": 2, "guard": None}


def test_every_n_frames_steps_on_every_nth_frame_only(tiny_model, frames):
    a = build_adapter(tiny_model, "online", "full", every_n_frames=3, **SMALL)
    taken = [a.step(f).stats.steps_taken for f in frames[:7]]
    assert taken == [1, 0, 0, 1, 0, 0, 1]
    assert len(a.window) == 7  # the window still receives every frame


def test_pipelined_predicts_with_the_weights_adapted_through_the_previous_frame(tiny_model, frames):
    serial = build_adapter(tiny_model, "online", "full", **SMALL)
    piped = build_adapter(tiny_model, "online", "full", schedule="pipelined", **SMALL)
    first = piped.step(frames[0])
    assert first.stats.steps_taken == 0  # frame 0 is predicted at θ0; its step is deferred
    for t in range(1, 5):
        reference = serial.step(frames[t - 1])  # weights now adapted through frame t-1
        x = to_working_resolution(frames[t], tiny_model.cfg.image_size)
        want_class, want_mask = serial.predict(x)
        got = piped.step(frames[t])
        torch.testing.assert_close(got.class_logits, want_class)
        torch.testing.assert_close(got.mask_logits, want_mask)
        # the step reported with frame t is the one taken before its prediction (frame t-1's)
        assert got.stats.steps_taken == 1 and got.stats.loss == reference.stats.loss


def test_finish_pending_takes_the_deferred_step_once(tiny_model, frames):
    piped = build_adapter(tiny_model, "online", "full", schedule="pipelined", **SMALL)
    piped.step(frames[0])
    assert piped.pending is not None
    assert not piped.params  # nothing adapted yet: frame 0 was predicted at θ0
    piped.finish_pending()
    assert piped.pending is None
    assert any(not torch.equal(piped.theta0[n], p) for n, p in piped.params.items())
    after = {n: p.detach().clone() for n, p in piped.params.items()}
    piped.finish_pending()  # nothing pending: no second step
    assert all(torch.equal(after[n], p) for n, p in piped.params.items())
    # the next frame reports the step finish_pending took and takes none itself before predicting
    assert piped.step(frames[1]).stats.steps_taken == 1
    assert all(torch.equal(after[n], p) for n, p in piped.params.items())


def test_a_pending_step_survives_a_state_round_trip(tiny_model, frames):
    piped = build_adapter(tiny_model, "online", "full", schedule="pipelined", **SMALL)
    piped.step(frames[0])
    twin = build_adapter(tiny_model, "online", "full", schedule="pipelined", **SMALL)
    twin.load_state_dict(piped.state_dict())
    assert twin.pending is not None
    a, b = piped.step(frames[1]), twin.step(frames[1])
    torch.testing.assert_close(a.mask_logits, b.mask_logits)
    assert a.stats.loss == b.stats.loss is not None
