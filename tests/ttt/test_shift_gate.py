"""The safe-adaptation guard's shift detector (frame statistics vs the training images) and its effect on steps."""

from __future__ import annotations

import copy

import pytest
import torch

from mask2former_ttt.ttt import build_adapter
from mask2former_ttt.ttt.frames import to_working_resolution
from mask2former_ttt.ttt.shift_score import frame_statistics, gate_scale, reference_statistics, shift_score

GATE = (2.5, 4.0)


def noisy(frame: torch.Tensor, sigma: float = 60.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return (frame.float() + sigma * torch.randn(frame.shape, generator=g)).clamp(0, 255).to(torch.uint8)


def foggy(frame: torch.Tensor, amount: float = 0.6) -> torch.Tensor:
    return (frame.float() * (1 - amount) + 255 * amount).to(torch.uint8)


@pytest.fixture
def frames() -> list[torch.Tensor]:
    """8 smooth street-like frames (3, 128, 160) uint8: sky, buildings of varying colour, road; camera panning."""
    g = torch.Generator().manual_seed(0)
    world = torch.zeros(3, 128, 320)
    world[:, :40] = torch.tensor([0.55, 0.7, 0.9])[:, None, None]
    for x0 in range(0, 320, 40):
        world[:, 40:90, x0 : x0 + 40] = torch.rand(3, generator=g)[:, None, None] * 0.6 + 0.2
    world[:, 90:] = torch.tensor([0.35, 0.35, 0.38])[:, None, None]
    return [(world[:, :, 8 * t : 8 * t + 160] * 255).to(torch.uint8) for t in range(8)]


@pytest.fixture
def reference(frames: list[torch.Tensor], tiny_model) -> dict[str, list[float]]:
    # the clip's own frames stand in for the training images, at the adapter's working resolution as calibration
    # computes them; widen the spread like a real training set would
    ref = reference_statistics(to_working_resolution(f, tiny_model.cfg.image_size) for f in frames)
    ref["std"] = [max(s, 0.02) for s in ref["std"]]
    return ref


@pytest.fixture
def gated_model(tiny_model, reference):
    model = copy.deepcopy(tiny_model)  # the session model must keep its config
    model.cfg.input_stats_reference = reference
    return model


def test_frame_statistics_of_flat_and_noisy_frames() -> None:
    flat = torch.full((3, 32, 40), 128, dtype=torch.uint8)
    s = frame_statistics(flat)
    assert s.shape == (5,)
    assert float(s[0]) == pytest.approx(0.0, abs=1e-6) and float(s[1]) == pytest.approx(0.0, abs=1e-6)
    assert s[2:].tolist() == pytest.approx([128 / 255] * 3)
    assert frame_statistics(noisy(flat))[1] > 0.1  # high-frequency energy


def test_shift_score_separates_typical_from_shifted_frames(frames, reference, tiny_model) -> None:
    def score(frame: torch.Tensor) -> float:
        return shift_score(to_working_resolution(frame, tiny_model.cfg.image_size), reference)

    assert score(frames[3]) < GATE[0]
    assert score(noisy(frames[3])) > GATE[1]
    assert score(foggy(frames[3])) > GATE[1]


def test_gate_scale_ramps_between_low_and_high() -> None:
    assert [gate_scale(s, *GATE) for s in (0.0, 2.5, 3.25, 4.0, 9.0)] == pytest.approx([0.0, 0.0, 0.5, 1.0, 1.0])


def test_gate_skips_typical_frames_and_adapts_on_shifted_ones(gated_model, frames) -> None:
    a = build_adapter(gated_model, "online", "full", shift_gate=GATE, anchor=0.1)
    r = a.step(frames[0])
    assert r.stats.step_scale == 0.0 and r.stats.steps_taken == 0 and r.stats.loss is None
    assert all(torch.equal(a.params[n], a.theta0[n]) for n in a.theta0)
    for f in frames[:3]:
        r = a.step(noisy(f))
        assert r.stats.step_scale == 1.0 and r.stats.steps_taken == 1
    def distance() -> float:
        return sum(float((a.params[n].detach() - a.theta0[n]).norm()) for n in a.theta0)
    moved = distance()
    assert moved > 0
    a.step(frames[4])  # typical again: no step, weights relax 10 % toward θ0
    assert distance() == pytest.approx(0.9 * moved, rel=1e-3)


def test_gate_is_off_without_a_reference_in_the_checkpoint(tiny_model, frames) -> None:
    assert tiny_model.cfg.input_stats_reference is None
    a = build_adapter(tiny_model, "online", "full", shift_gate=GATE)
    r = a.step(frames[0])
    assert r.stats.step_scale == 1.0 and r.stats.steps_taken == 1 and r.stats.shift_score is None


def test_adapter_gates_on_the_pixel_shift_score(gated_model, frames) -> None:
    ref = gated_model.cfg.input_stats_reference
    frame = noisy(frames[2], 20.0)
    working = to_working_resolution(frame, gated_model.cfg.image_size)
    a = build_adapter(gated_model, "online", "full", shift_gate=(0.5, 1e6), confidence_gate=None)
    r = a.step(frame)
    assert r.stats.shift_score == pytest.approx(shift_score(working, ref))
    assert r.stats.step_scale == pytest.approx((shift_score(working, ref) - 0.5) / (1e6 - 0.5))
