"""The guard serves θ0 while the step is shut: a stream whose gate is shut is predicted by θ0, its adapted weights
kept (relaxing as on any shut frame) for when the gate opens again; the confidence gate's forward of θ0 on such a
frame is its prediction."""

from __future__ import annotations

import pytest
import torch

from mask2former_ttt.ttt import build_adapter
from tests.gate_scenes import NEVER, confidence_gated, count_predictions, count_theta0_forwards, scene
from tests.serial_and_batched import run_serial_and_batched


@pytest.fixture
def gated_model(tiny_model, training):
    return confidence_gated(tiny_model, training)


@pytest.fixture
def frames_and_gate(gated_model):
    """Four scenes and a confidence gate that opens on the first only (the one θ0 is least sure of)."""
    frames = [scene(s) for s in (99, 98, 97, 96)]
    probe = build_adapter(gated_model, "online", "full", shift_gate=NEVER, confidence_gate=(1e5, 2e5))
    scores = [probe.step(f).stats.confidence_score for f in frames]
    order = sorted(range(4), key=lambda i: -scores[i])
    frames = [frames[i] for i in order]
    top, second = scores[order[0]], scores[order[1]]
    return frames, {"shift_gate": NEVER, "confidence_gate": ((top + second) / 2, top)}


def theta0_prediction(model, frame: torch.Tensor) -> torch.Tensor:
    """θ0's mask logits (Q, h/4, w/4) on `frame`."""
    return build_adapter(model, "online", "full", shift_gate=NEVER, confidence_gate=None).step(frame).mask_logits


def adapted_prediction(stream, frame: torch.Tensor) -> torch.Tensor:
    """The mask logits (Q, h/4, w/4) of `frame` with `stream`'s adapted weights (not what the guard chose)."""
    from model.masking import normalize, with_flag
    from mask2former_ttt.ttt.frames import to_working_resolution

    x = to_working_resolution(frame, stream.model.cfg.image_size)
    with torch.no_grad():
        return stream.forward(with_flag(normalize(x[None], stream.model.cfg)), "predict", stream.params).mask_logits[0]


def test_a_step_before_the_prediction_serves_theta0_on_a_shut_frame_with_one_forward(gated_model, frames_and_gate):
    frames, gate = frames_and_gate
    served = build_adapter(gated_model, "online", "full", **gate)
    assert served.step(frames[0]).stats.steps_taken == 1
    adapted = served.flat.data.clone()
    calls = count_predictions(gated_model)
    shut = served.step(frames[1])
    assert shut.stats.step_scale == 0.0 and len(calls) == 1, "the gate's forward of θ0 is the prediction"
    assert torch.equal(shut.mask_logits, theta0_prediction(gated_model, frames[1]))
    assert not torch.allclose(adapted_prediction(served, frames[1]), shut.mask_logits, atol=1e-5)
    assert torch.equal(served.flat.data, adapted), "serving θ0 leaves the adaptation as it was (`full`: no anchor)"
    reopened = served.step(frames[0])
    assert reopened.stats.steps_taken == 1
    torch.testing.assert_close(reopened.mask_logits, adapted_prediction(served, frames[0]), atol=0, rtol=0)


def test_a_pipelined_stream_goes_by_the_previous_frames_gate(gated_model, frames_and_gate, monkeypatch):
    frames, gate = frames_and_gate
    sequence = [frames[0], frames[1], frames[2], frames[0], frames[3]]  # open, shut, shut, open, shut
    served = build_adapter(gated_model, "online", "default", **gate)
    forwards = count_theta0_forwards(monkeypatch)
    got, adapted = [], []
    for f in sequence:
        result = served.step(f)
        got.append(result.mask_logits)
        adapted.append(adapted_prediction(served, f) if served.stepped else None)
        served.finish_pending()  # as the service does after sending the result
        assert served.pending is None
    # the gates of frames 1 and 4 run θ0 (those frames were predicted with adapted weights); frames 2 and 3 were
    # predicted by θ0, and their gates reuse that prediction
    assert len(forwards) == 2
    theta0 = [theta0_prediction(gated_model, f) for f in sequence]
    assert torch.equal(got[0], theta0[0])  # never stepped yet
    assert not torch.allclose(got[1], theta0[1], atol=1e-5)  # frame 0 opened: adapted weights
    assert torch.equal(got[2], theta0[2]) and torch.equal(got[3], theta0[3])  # frames 1 and 2 were shut
    assert not torch.allclose(adapted[2], theta0[2], atol=1e-5)  # though the stream had adapted weights
    assert not torch.allclose(got[4], theta0[4], atol=1e-5)  # frame 3 opened


@pytest.mark.filterwarnings("ignore:There is a performance drop:UserWarning")  # SDPA under vmap on CPU
@pytest.mark.parametrize("preset", ["full", "default"])
def test_batched_streams_serve_theta0_as_their_serial_steps_do(gated_model, frames_and_gate, preset, monkeypatch):
    import mask2former_ttt.ttt.cross_stream as cross_stream

    served_after_stepping: list[bool] = []
    real = cross_stream.predict_many

    def spy(adapters, xs, views):
        served_after_stepping.extend(a.stepped and a.predicts_with_theta0 for a in adapters)
        return real(adapters, xs, views)

    monkeypatch.setattr(cross_stream, "predict_many", spy)
    frames, gate = frames_and_gate
    clips = [[frames[0], frames[1], frames[2]], [frames[1], frames[0], frames[3]], [frames[0], frames[0], frames[1]]]
    serial, batched, pairs = run_serial_and_batched(gated_model, clips, preset, **gate)
    assert any(served_after_stepping), "a batched stream was served θ0 after it had adapted"
    for want, got in pairs:
        torch.testing.assert_close(got.class_logits, want.class_logits, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(got.mask_logits, want.mask_logits, atol=1e-4, rtol=1e-4)
        assert (got.stats.step_scale, got.stats.steps_taken) == (want.stats.step_scale, want.stats.steps_taken)
    for a, b in zip(serial, batched):
        torch.testing.assert_close(b.flat.data, a.flat.data, atol=1e-5, rtol=1e-5)
        assert (a.average is None) == (b.average is None)
        if a.average is not None:
            torch.testing.assert_close(b.average, a.average, atol=1e-5, rtol=1e-5)


def test_the_adapting_presets_are_guarded_and_only_full_drops_the_anchor() -> None:
    """Chosen on domain A's validation videos: `full` without the per-step pull toward θ0; the authors' release
    runs unguarded."""
    from mask2former_ttt.ttt.config import ttt_preset

    assert ttt_preset("release").guard is None
    assert ttt_preset("full").guard.anchor == 0.0
    assert ttt_preset("default").guard.anchor == ttt_preset("fast").guard.anchor == 0.01
