"""Low-rank deltas: a new stream starts exactly at θ0, each adapted matrix moves by at most rank r, 1-D tensors
adapt directly, and the stream holds a small fraction of the full scope's bytes."""

from __future__ import annotations

import pytest
import torch

from model.config import preset
from mask2former_ttt.ttt import build_adapter
from mask2former_ttt.ttt.low_rank import A_SUFFIX, B_SUFFIX, LowRankDeltas
from tests.random_model import random_model


@pytest.fixture(scope="module")
def model():
    return random_model(preset("tiny"), seed=21).requires_grad_(False)


def _frame(seed: int) -> torch.Tensor:
    return torch.randint(0, 255, (3, 64, 96), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def _lowrank(model, rank: int = 2):
    return build_adapter(
        model, "online", "full", batch_size=1, micro_batch=1, shift_gate=None, adapt_scope="lowrank",
        lowrank_rank=rank, lr=0.5,
    )


def test_the_factors_start_at_theta0(model) -> None:
    a = _lowrank(model)
    applied = a.lowrank.applied(a.theta0)
    shared = dict(model.named_parameters())
    assert set(applied) == set(a.names)
    assert all(torch.equal(applied[n], shared[n]) for n in a.names)


def test_a_step_moves_each_matrix_by_at_most_rank_r_and_1d_tensors_directly(model) -> None:
    rank = 2
    a = _lowrank(model, rank)
    for seed in range(3):
        a.step(_frame(seed))
    shared = dict(model.named_parameters())
    applied = a.lowrank.applied(a.params)
    moved = [n for n in a.lowrank.matrices if not torch.equal(applied[n], shared[n])]
    assert moved, "no matrix adapted"
    for n in moved:
        delta = (applied[n] - shared[n]).reshape(shared[n].shape[0], -1).double()
        assert int(torch.linalg.matrix_rank(delta, rtol=1e-2)) <= rank, n  # float32 rounding of W0 + BA aside
    assert any(not torch.equal(a.params[n], shared[n]) for n in a.lowrank.direct)
    assert all(n + A_SUFFIX in a.params and n + B_SUFFIX in a.params for n in a.lowrank.matrices)


def test_the_stream_holds_a_fraction_of_the_full_scope(model) -> None:
    low, full = _lowrank(model, 4), build_adapter(model, "online", "full", batch_size=1, micro_batch=1, shift_gate=None)
    for adapter in (low, full):
        adapter.step(_frame(5))
    low_w = sum(t.numel() for t in low.theta0.values())
    full_w = sum(t.numel() for t in full.theta0.values())
    assert low_w < 0.1 * full_w
    assert low.memory_bytes() < full.memory_bytes()


def test_a_state_round_trip_continues_identically(model) -> None:
    a = _lowrank(model)
    a.step(_frame(1))
    b = _lowrank(model)
    b.load_state_dict(a.state_dict())
    ra, rb = a.step(_frame(2)), b.step(_frame(2))
    assert torch.equal(ra.mask_logits, rb.mask_logits)


def test_rank_must_be_positive(model) -> None:
    with pytest.raises(ValueError, match="lowrank_rank"):
        LowRankDeltas(dict(model.named_parameters()), ["encoder." + "x"] * 0, 0)
