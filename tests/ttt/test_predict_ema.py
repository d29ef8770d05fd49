"""The guard's `predict_ema`: predictions run with a moving average of the adapted weights (a mean teacher), while the TTT
steps train the weights themselves."""

from __future__ import annotations

import pytest
import torch

from mask2former_ttt.ttt.methods import build_adapter
from mask2former_ttt.ttt.stats import StepStats


def _clip(n: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return [(torch.rand(3, 96, 128, generator=g) * 255).to(torch.uint8) for _ in range(n)]


def test_predictions_use_the_moving_average_of_the_weights(tiny_model) -> None:
    a = build_adapter(tiny_model, preset="full", predict_ema=0.75)
    expected = None
    for frame in _clip(3):
        result = a.step(frame)
        weights = a.flat.data.clone()
        expected = weights if expected is None else 0.75 * expected + 0.25 * weights
    torch.testing.assert_close(a.average, expected)
    assert (a.average - a.flat.data).abs().max() > 1e-5  # the average lags the weights
    x = a.window[-1]
    from model.masking import normalize, with_flag

    with torch.no_grad():
        want = a.forward(with_flag(normalize(x[None], tiny_model.cfg)), "predict", a.flat.views(expected))
        latest = a.forward(with_flag(normalize(x[None], tiny_model.cfg)), "predict")
    torch.testing.assert_close(result.class_logits, want.class_logits[0].float())
    assert not torch.allclose(result.class_logits, latest.class_logits[0].float(), atol=1e-6)


def test_the_average_survives_state_round_trips_and_restarts_after_a_rollback(tiny_model) -> None:
    a = build_adapter(tiny_model, preset="full", predict_ema=0.5)
    clip = _clip(4)
    for frame in clip[:3]:
        a.step(frame)
    b = build_adapter(tiny_model, preset="full", predict_ema=0.5)
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(b.average, a.average)
    torch.testing.assert_close(b.step(clip[3]).class_logits, a.step(clip[3]).class_logits)
    a.rollback(StepStats(frame_index=4), "test")
    assert a.average is None  # the next frame's average starts from the restored weights
    assert a.memory_bytes() < b.memory_bytes()
    assert b.estimated_memory_bytes() > build_adapter(tiny_model, preset="full").estimated_memory_bytes()


def test_on_in_default_only_and_validated(tiny_model) -> None:
    from mask2former_ttt.ttt.config import ttt_preset

    assert ttt_preset("default").guard.predict_ema == 0.9  # chosen on domain A's validation videos
    assert {ttt_preset(p).guard.predict_ema for p in ("full", "fast")} == {0.0}
    assert ttt_preset("release").guard is None
    a = build_adapter(tiny_model, preset="full")
    for frame in _clip(2):
        a.step(frame)
    assert a.average is None  # off: predictions use the latest weights
    with pytest.raises(ValueError):
        build_adapter(tiny_model, preset="default", predict_ema=1.0)


def test_the_average_follows_the_relaxation_of_skipped_frames(tiny_model) -> None:
    a = build_adapter(tiny_model, preset="full", predict_ema=0.5, anchor=0.5)
    clip = _clip(4)
    for frame in clip[:2]:
        a.step(frame)
    a.guard.step_scale = lambda *args: 0.0  # the gate closes: no step, the weights relax toward θ0
    before = a.average.clone()
    a.step(clip[2])
    torch.testing.assert_close(a.average, 0.5 * before + 0.5 * a.flat.data)
