"""The confidence gate: the frozen model's prediction uncertainty against its uncertainty on the training images
(ttt/confidence_shift.py), and how it opens the safe-adaptation guard where the pixel score stays closed."""

from __future__ import annotations

import copy
import logging

import pytest
import torch

from mask2former_ttt.ttt import build_adapter
from mask2former_ttt.ttt.confidence_shift import (
    ConfidenceReferenceMissing,
    confidence_gate_in_use,
    confidence_reference,
    confidence_shift_score,
    prediction_uncertainty,
)
from mask2former_ttt.ttt.frames import to_working_resolution
from tests.gate_scenes import (
    NEVER,
    check_gate_opens_where_the_pixel_gate_stays_closed,
    check_score_is_theta0s,
    confidence_gated,
    count_predictions,
    count_theta0_forwards,
    scene,
)

ALWAYS = (-1e6, -1e5)  # a confidence gate that is always open


@pytest.fixture
def gated_model(tiny_model, training):
    return confidence_gated(tiny_model, training)


def test_uncertainty_is_one_minus_the_top_class_probability(tiny_model, training) -> None:
    """A class head with zero output gives every class the same probability at every pixel: 1 − 1/K exactly."""
    blind = copy.deepcopy(tiny_model)
    with torch.no_grad():
        blind.head.class_predictor.weight.zero_()
        blind.head.class_predictor.bias.zero_()
    k = tiny_model.cfg.num_classes
    u = prediction_uncertainty(blind, torch.stack(training[:3]))
    assert u.shape == (3,) and torch.allclose(u, torch.full((3,), 1 - 1 / k, dtype=u.dtype), atol=1e-5)
    # the trained-from-scratch tiny model is not uniform: less unsure than that, never negative
    v = prediction_uncertainty(tiny_model, torch.stack(training[:3]))
    assert bool((v >= 0).all() and (v < 1 - 1 / k).all())


def test_reference_and_score_are_in_units_of_the_training_images_tail(tiny_model, training) -> None:
    ref = confidence_reference(tiny_model, training)
    assert 0 < ref["median"] < ref["q_high"] < 1
    def score(frame):
        return confidence_shift_score(float(prediction_uncertainty(tiny_model, frame[None])[0]), ref)

    scores = sorted(score(f) for f in training)
    assert scores[len(scores) // 2] == pytest.approx(0.0, abs=0.1)  # the median training image
    assert scores[-3] <= 1.0 < scores[-1] + 1e-9  # the 99.5 % quantile of 24 lies between the two least confident
    frame = training[0]
    u = float(prediction_uncertainty(tiny_model, frame[None])[0])
    shifted = {"median": u - 0.3, "q_high": u - 0.2}  # u sits 3 tail units above this reference's median
    assert confidence_shift_score(u, shifted) == pytest.approx(3.0, rel=1e-4)


def test_confidence_gate_opens_where_the_pixel_gate_stays_closed(gated_model) -> None:
    check_gate_opens_where_the_pixel_gate_stays_closed(gated_model, scene(99), "confidence_gate", "confidence_score", ALWAYS)


def test_score_is_measured_with_theta0_not_the_adapted_weights(gated_model) -> None:
    """A stream that grew confident must not close the gate on itself."""
    check_score_is_theta0s(gated_model, scene(99), "confidence_gate", "confidence_score", ALWAYS)


def test_a_fully_open_pixel_gate_skips_the_forward(gated_model, monkeypatch) -> None:
    forwards = count_theta0_forwards(monkeypatch)
    pixel_open = build_adapter(gated_model, "online", "full", shift_gate=ALWAYS, confidence_gate=ALWAYS)
    r = pixel_open.step(scene(99))
    assert r.stats.step_scale == 1.0 and r.stats.confidence_score is None and forwards == []


def test_checkpoint_without_confidence_reference_runs_with_the_gate_off_and_says_how_to_turn_it_on(
    gated_model, caplog
) -> None:
    model = copy.deepcopy(gated_model)
    model.cfg.confidence_reference = None
    model.cfg.name = "unconfident-for-this-test"
    with caplog.at_level(logging.WARNING):
        a = build_adapter(model, "online", "full", shift_gate=NEVER, confidence_gate=ALWAYS)
    assert "no confidence_reference" in caplog.text and "m2f-ttt calibrate" in caplog.text
    r = a.step(scene(99))
    assert r.stats.step_scale == 0.0 and r.stats.confidence_score is None
    assert confidence_gate_in_use(gated_model.cfg, NEVER, ALWAYS) == ALWAYS
    assert confidence_gate_in_use(model.cfg, NEVER, ALWAYS) is None
    with pytest.raises(ConfidenceReferenceMissing, match="m2f-ttt calibrate"):
        confidence_shift_score(0.5, None)


def test_a_stream_that_never_stepped_reuses_its_own_prediction_and_one_that_stepped_does_not(
    gated_model, monkeypatch
) -> None:
    """Before any update the stream's predictions are θ0's: the gate reads the frame's own prediction instead of a
    second forward, and gets the same score. After an update it must run θ0 again."""
    forwards = count_theta0_forwards(monkeypatch)
    frame = scene(99)
    reference = build_adapter(gated_model, "online", "full", shift_gate=NEVER, confidence_gate=(1e5, 2e5))
    expected = [reference.step(scene(s)).stats.confidence_score for s in (99, 98)]  # not pipelined: adapt first
    assert len(forwards) == 2  # the step comes before the prediction: the gate runs θ0, and that is the prediction
    forwards.clear()
    piped = build_adapter(gated_model, "online", "full", shift_gate=NEVER, confidence_gate=(1e5, 2e5), schedule="pipelined")
    piped.step(frame)
    r = piped.step(scene(98))  # reports frame 99's step, gated on frame 99's own θ0 prediction
    assert forwards == [] and not piped.stepped
    assert r.stats.confidence_score == pytest.approx(expected[0], rel=1e-5)
    opened = build_adapter(gated_model, "online", "full", shift_gate=NEVER, confidence_gate=ALWAYS, schedule="pipelined")
    opened.step(frame)
    opened.step(scene(98))  # frame 99's step is taken: the weights leave θ0
    assert opened.stepped and forwards == []
    opened.step(scene(97))  # frame 98's gate: its prediction used adapted weights, so θ0 runs
    assert forwards == [1]  # an adapted stream's predictions are not taken for θ0's
    state = opened.state_dict()
    fresh = build_adapter(gated_model, "online", "full", shift_gate=NEVER, confidence_gate=ALWAYS, schedule="pipelined")
    fresh.load_state_dict(state)
    assert fresh.stepped


@pytest.mark.filterwarnings("ignore:There is a performance drop:UserWarning")  # SDPA under vmap on CPU
def test_batched_streams_reuse_their_predictions_too(gated_model, monkeypatch) -> None:
    from mask2former_ttt.ttt.cross_stream import finish_pending_many, step_many

    forwards = count_theta0_forwards(monkeypatch)
    closed = {"shift_gate": NEVER, "confidence_gate": (1e5, 2e5)}
    serial = build_adapter(gated_model, "online", "default", seed=0, **closed)
    serial.step(scene(99))
    want = serial.step(scene(98)).stats.confidence_score
    forwards.clear()
    streams = [build_adapter(gated_model, "online", "default", seed=i, **closed) for i in range(2)]
    step_many(streams, [scene(99), scene(99)])
    finish_pending_many(streams)
    got = step_many(streams, [scene(98), scene(98)])
    assert forwards == []
    assert [r.stats.confidence_score for r in got] == pytest.approx([want, want], rel=1e-4)


def test_full_and_default_carry_the_gate_chosen_on_domain_a_and_the_others_do_not() -> None:
    from mask2former_ttt.ttt.config import ttt_preset

    # chosen on A's validation videos; fast lost its final clean segment on return videos with it (guard.md)
    assert ttt_preset("default").guard.confidence_gate == ttt_preset("full").guard.confidence_gate == (0.5, 1.5)
    assert ttt_preset("fast").guard.confidence_gate is None and ttt_preset("release").guard is None


def test_a_step_before_the_prediction_reuses_the_gates_forward_of_theta0_while_the_gate_stays_shut(
    gated_model,
) -> None:
    """`full` (not pipelined) scores a frame before predicting it: at θ0 with the gate shut, the gate's forward is
    the frame's prediction, so each frame costs one forward, and the prediction is exactly θ0's."""
    frames = [scene(s) for s in (99, 98, 97)]
    plain = build_adapter(gated_model, "online", "full", shift_gate=NEVER, confidence_gate=None)
    want = [plain.step(f) for f in frames]
    calls = count_predictions(gated_model)
    shut = build_adapter(gated_model, "online", "full", shift_gate=NEVER, confidence_gate=(1e5, 2e5))
    got = [shut.step(f) for f in frames]
    assert calls == ["predict"] * 3, "one forward per frame, not the gate's and the prediction's"
    assert [r.stats.confidence_score is not None for r in got] == [True] * 3
    for g, w in zip(got, want):
        assert torch.equal(g.class_logits, w.class_logits) and torch.equal(g.mask_logits, w.mask_logits)


def test_a_gate_that_opens_predicts_with_the_adapted_weights_not_the_gates_theta0_forward(gated_model) -> None:
    frame = scene(99)
    theta0 = build_adapter(gated_model, "online", "full", shift_gate=NEVER, confidence_gate=(1e5, 2e5)).step(frame)
    calls = count_predictions(gated_model)
    opened = build_adapter(gated_model, "online", "full", shift_gate=NEVER, confidence_gate=ALWAYS)
    r = opened.step(frame)
    assert opened.stepped and r.stats.steps_taken == 1
    assert calls == ["predict", "predict"]  # θ0 for the gate, then the adapted weights for the frame
    assert not torch.allclose(r.mask_logits, theta0.mask_logits, atol=1e-6)


@pytest.mark.filterwarnings("ignore:There is a performance drop:UserWarning")  # SDPA under vmap on CPU
def test_batched_streams_hand_over_the_gates_theta0_prediction_and_batch_the_rest(gated_model, monkeypatch) -> None:
    """step_many with a step before the prediction: streams whose gate stayed shut return their gate's θ0 forward,
    the one whose gate opened is predicted in the vmapped call with its adapted weights; each as its serial step."""
    import mask2former_ttt.ttt.cross_stream as cross_stream
    from mask2former_ttt.ttt.cross_stream import batch_key, step_many

    frames = [scene(99), scene(98), scene(97)]
    probe = build_adapter(gated_model, "online", "full", shift_gate=NEVER, confidence_gate=(1e5, 2e5))
    scores = [probe.step(f).stats.confidence_score for f in frames]
    top, second = sorted(scores)[-1], sorted(scores)[-2]
    gate = {"shift_gate": NEVER, "confidence_gate": ((top + second) / 2, top)}  # opens on the least sure frame only
    want = [build_adapter(gated_model, "online", "full", seed=i, **gate).step(f) for i, f in enumerate(frames)]
    assert [r.stats.steps_taken for r in want] == [int(v == top) for v in scores]
    streams = [build_adapter(gated_model, "online", "full", seed=i, **gate) for i in range(3)]
    assert len({batch_key(a, tuple(frames[0].shape[1:])) for a in streams}) == 1
    calls = count_predictions(gated_model)
    batched: list[int] = []
    real = cross_stream._predict_batched
    monkeypatch.setattr(cross_stream, "_predict_batched",
                        lambda a, xs, views: batched.append(len(a)) or real(a, xs, views))
    got = step_many(streams, frames)
    assert len(calls) == 4 and batched == [1]  # three gates' θ0 forwards, then the opened stream's prediction
    for g, w in zip(got, want):
        torch.testing.assert_close(g.class_logits, w.class_logits, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(g.mask_logits, w.mask_logits, atol=1e-4, rtol=1e-4)


def test_the_gates_theta0_prediction_is_handed_only_to_the_frame_it_was_made_for(gated_model) -> None:
    """A caller driving the stream's parts (begin_frame, adapt, predict) that predicts another frame gets that
    frame's own prediction, not the gated frame's."""
    shut = build_adapter(gated_model, "online", "full", shift_gate=NEVER, confidence_gate=(1e5, 2e5))
    work = shut.begin_frame(scene(99))
    assert work.due
    shut.adapt(work.stats, work.view)
    assert work.view.logits is not None  # the gate's θ0 forward, kept for the frame's own prediction
    other = to_working_resolution(scene(98), gated_model.cfg.image_size, gated_model.cfg.max_size)
    want = build_adapter(gated_model, "online", "full", shift_gate=NEVER, confidence_gate=None).predict(other)
    got = shut.predict(other)
    assert torch.equal(got[1], want[1])
