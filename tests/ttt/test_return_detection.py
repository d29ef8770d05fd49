"""The guard's return detection (forgetting on drift-and-return streams): after `RETURN_FRAMES` consecutive frames
with the shift gate closed, the stream counts as back on the training domain and relaxes toward θ0 by
`RETURN_ANCHOR` per frame instead of `anchor`, with its optimizer state dropped once; one open frame restarts
the count, so a flickering score does not reset the weights; `RETURN_SNAP_FRAMES` closed frames later the weights
are θ0 exactly. The constants are patched here to keep the streams short."""

from __future__ import annotations

import copy

import pytest
import torch

from mask2former_ttt.ttt import build_adapter, guard
from mask2former_ttt.ttt.config import ttt_preset
from mask2former_ttt.ttt.frames import to_working_resolution
from mask2former_ttt.ttt.shift_score import reference_statistics

GATE = (2.5, 4.0)


def noisy(frame: torch.Tensor, sigma: float = 60.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return (frame.float() + sigma * torch.randn(frame.shape, generator=g)).clamp(0, 255).to(torch.uint8)


@pytest.fixture
def frames() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    world = torch.zeros(3, 128, 320)
    world[:, :40] = torch.tensor([0.55, 0.7, 0.9])[:, None, None]
    for x0 in range(0, 320, 40):
        world[:, 40:90, x0 : x0 + 40] = torch.rand(3, generator=g)[:, None, None] * 0.6 + 0.2
    world[:, 90:] = torch.tensor([0.35, 0.35, 0.38])[:, None, None]
    return [(world[:, :, 8 * t : 8 * t + 160] * 255).to(torch.uint8) for t in range(8)]


@pytest.fixture
def gated_model(tiny_model, frames):
    model = copy.deepcopy(tiny_model)
    ref = reference_statistics(to_working_resolution(f, model.cfg.image_size) for f in frames)
    model.cfg.input_stats_reference = {**ref, "std": [max(s, 0.02) for s in ref["std"]]}
    return model


@pytest.fixture
def returns(monkeypatch):
    """Set the return constants: returns(frames, anchor, snap)."""

    def set_(frames: int = 5, anchor: float = 0.2, snap: int = 50) -> None:
        monkeypatch.setattr(guard, "RETURN_FRAMES", frames)
        monkeypatch.setattr(guard, "RETURN_ANCHOR", anchor)
        monkeypatch.setattr(guard, "RETURN_SNAP_FRAMES", snap)

    return set_


def _distance(a) -> float:
    return sum(float((a.params[n].detach() - a.theta0[n]).norm()) for n in a.theta0)


def _adapted(model, frames, **kw):
    a = build_adapter(model, "online", "full", shift_gate=GATE, anchor=0.1, **kw)
    for f in frames[:3]:
        assert a.step(noisy(f)).stats.step_scale == 1.0
    assert a.optimizer is not None
    return a


def test_return_detected_after_n_closed_frames_relaxes_fast_and_drops_momentum(gated_model, frames, returns) -> None:
    returns(3, 0.5)
    a = _adapted(gated_model, frames)
    moved = _distance(a)
    for expected in (0.9, 0.9 * 0.9):  # the first two closed frames: the ordinary anchor
        assert a.step(frames[4]).stats.step_scale == 0.0
        assert _distance(a) == pytest.approx(expected * moved, rel=2e-2)
        assert a.optimizer is not None  # momentum kept while the return is unconfirmed
    a.step(frames[5])  # third closed frame: return detected
    assert _distance(a) == pytest.approx(0.81 * 0.5 * moved, rel=2e-2)
    assert a.optimizer is None
    assert a.guard.shut_frames == 3
    a.step(frames[6])
    assert _distance(a) == pytest.approx(0.81 * 0.25 * moved, rel=2e-2)


def test_return_anchor_one_resets_to_theta0(gated_model, frames, returns) -> None:
    returns(1, 1.0)
    a = _adapted(gated_model, frames)
    a.step(frames[4])
    assert all(torch.equal(a.params[n], a.theta0[n]) for n in a.theta0)


def test_one_open_frame_restarts_the_count(gated_model, frames, returns) -> None:
    returns(3, 1.0)
    a = _adapted(gated_model, frames)
    a.step(frames[4])
    a.step(frames[5])
    assert a.guard.shut_frames == 2
    assert a.step(noisy(frames[6])).stats.step_scale == 1.0  # the score flickers back up
    assert a.guard.shut_frames == 0
    moved = _distance(a)
    a.step(frames[7])
    a.step(frames[4])  # two closed frames again: not yet a return, ordinary relaxation only
    assert _distance(a) == pytest.approx(0.81 * moved, rel=2e-2)
    assert a.optimizer is not None


def test_closed_frame_count_survives_state_dict(gated_model, frames, returns) -> None:
    returns(3, 0.5)
    a = _adapted(gated_model, frames)
    a.step(frames[4])
    a.step(frames[5])
    b = build_adapter(gated_model, "online", "full", shift_gate=GATE, anchor=0.1)
    b.load_state_dict(a.state_dict())
    assert b.guard.shut_frames == 2
    moved = _distance(b)
    b.step(frames[6])  # the third closed frame in a row, counted across the save
    assert _distance(b) == pytest.approx(0.5 * moved, rel=2e-2)


def test_the_paper_rows_never_detect_a_return(gated_model, frames) -> None:
    # unguarded: every frame steps, so the count never starts
    a = build_adapter(gated_model, "online", "full", guard=None)
    for _ in range(6):
        assert a.step(frames[4]).stats.step_scale == 1.0
    assert a.guard.shut_frames == 0 and ttt_preset("release").guard is None


def test_a_long_return_snaps_the_weights_and_their_average_to_theta0_exactly(gated_model, frames, returns) -> None:
    returns(2, 0.5, 3)
    a = _adapted(gated_model, frames, predict_ema=0.5)
    for _ in range(4):  # 2 closed frames confirm the return, 2 more relax: not yet the 3 the snap waits for
        a.step(frames[4])
    assert a.stepped and not all(torch.equal(a.params[n], a.theta0[n]) for n in a.theta0)
    a.step(frames[4])
    assert not a.stepped
    assert all(torch.equal(a.params[n], a.theta0[n]) for n in a.theta0)
    assert torch.equal(a.average, a._theta0_flat())  # predictions are θ0's again
    a.step(frames[4])  # further closed frames keep θ0 (relaxing θ0 toward θ0 is exact)
    assert all(torch.equal(a.params[n], a.theta0[n]) for n in a.theta0) and not a.stepped
