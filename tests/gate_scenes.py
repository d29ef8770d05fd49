"""Frames for the safe-adaptation guard's tests (pixel and confidence gates): scenes of random colour blocks, and
a small training set of them at a model's working resolution."""

from __future__ import annotations

import copy

import pytest
import torch

from mask2former_ttt.ttt.frames import to_working_resolution
from mask2former_ttt.ttt.shift_score import reference_statistics


def scene(seed: int, shift: float = 0.0) -> torch.Tensor:
    """(3, 96, 128) uint8 blocks of random colour; `shift` rotates the colours toward inverted ones (0 = none)."""
    g = torch.Generator().manual_seed(seed)
    blocks = torch.rand(3, 6, 8, generator=g)
    img = blocks.repeat_interleave(16, 1).repeat_interleave(16, 2)
    img = img + 0.05 * torch.randn(img.shape, generator=g)
    img = (1 - shift) * img + shift * (1 - img.flip(0))
    return (img.clamp(0, 1) * 255).to(torch.uint8)


def training_stills(image_size: int, n: int = 24) -> list[torch.Tensor]:
    """`n` scenes (3, h, w) uint8 at the working resolution of a model with short side `image_size`."""
    return [to_working_resolution(scene(s), image_size) for s in range(n)]


def pixel_gated(model, training: list[torch.Tensor]):
    """A copy of `model` (the session's model keeps its config) whose pixel gate can run: its
    `input_stats_reference` is that of `training`."""
    gated = copy.deepcopy(model)
    gated.cfg.input_stats_reference = reference_statistics(training)
    return gated


def confidence_gated(model, training: list[torch.Tensor]):
    """`pixel_gated(model, training)` with the confidence gate's reference of `training` too."""
    from mask2former_ttt.ttt.confidence_shift import confidence_reference

    gated = pixel_gated(model, training)
    gated.cfg.confidence_reference = confidence_reference(gated, training)
    return gated


def count_theta0_forwards(monkeypatch) -> list[int]:
    """A list that grows by one entry per forward of θ0 a stream runs for its confidence gate (on a frame it has
    not predicted with θ0), by either route: the adapter's own, or confidence_shift's without a known uncertainty."""
    import mask2former_ttt.ttt.confidence_shift as cs
    from mask2former_ttt.ttt.adapter import StreamAdapter

    forwards: list[int] = []
    real = StreamAdapter._predict_theta0
    monkeypatch.setattr(StreamAdapter, "_predict_theta0", lambda self, x: forwards.append(1) or real(self, x))
    uncertainty = cs.prediction_uncertainty
    monkeypatch.setattr(cs, "prediction_uncertainty", lambda m, f: forwards.append(1) or uncertainty(m, f))
    return forwards


def count_predictions(model) -> list[str]:
    """A list that grows by one entry per forward of `model` (a per-test copy: the hook goes with it) in "predict"
    mode: the gate's θ0 forwards and the frames' predictions alike."""
    calls: list[str] = []

    def hook(module, args, kwargs):
        if kwargs.get("mode") == "predict":
            calls.append("predict")

    model.register_forward_pre_hook(hook, with_kwargs=True)
    return calls


NEVER = (1e6, 2e6)  # a pixel gate that never opens
ALWAYS_OPEN = (-2.0, -1.0)  # a pixel gate that is always fully open (a score is ≥ 0)


def check_gate_opens_where_the_pixel_gate_stays_closed(model, frame: torch.Tensor, gate: str, score: str,
                                                       always: tuple[float, float]) -> None:
    """The optional gate `gate` (GuardConfig field; its per-frame score is StepStats field `score`) opens the step on
    `frame` where the pixel gate stays closed: fully when always open (`always`), not when its thresholds sit above
    the frame's score, half way when they straddle it."""
    from mask2former_ttt.ttt import build_adapter

    def adapter(**kw):  # the confidence gate off (`full` carries it) unless it is `gate`
        return build_adapter(model, "online", "full", **{"shift_gate": NEVER, "confidence_gate": None, **kw})

    r = adapter().step(frame)
    assert r.stats.step_scale == 0.0 and r.stats.steps_taken == 0 and getattr(r.stats, score) is None
    r = adapter(**{gate: always}).step(frame)
    s = getattr(r.stats, score)
    assert s is not None and r.stats.step_scale == 1.0 and r.stats.steps_taken == 1
    assert adapter(**{gate: (s + 1, s + 2)}).step(frame).stats.step_scale == 0.0
    assert adapter(**{gate: (s - 1, s + 1)}).step(frame).stats.step_scale == pytest.approx(0.5, abs=1e-6)


def check_score_is_theta0s(model, frame: torch.Tensor, gate: str, score: str, always: tuple[float, float]) -> None:
    """The gate's score of `frame` stays what θ0 gives after the stream has adapted to it (adaptation must not close
    the gate on the shift it is learning)."""
    from mask2former_ttt.ttt import build_adapter

    a = build_adapter(model, "online", "full", shift_gate=NEVER, lr=0.5, **{gate: always})
    first = getattr(a.step(frame).stats, score)
    for _ in range(3):
        r = a.step(frame)
    assert any(not torch.equal(a.params[n], a.theta0[n]) for n in a.theta0)  # the stream has adapted
    assert getattr(r.stats, score) == pytest.approx(first, rel=1e-5)
