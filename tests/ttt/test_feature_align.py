"""Feature alignment beside the MAE loss (ttt/feature_align.py): the term, its weight in a stream's objective, what
a step does with it, and a checkpoint without the reference."""

from __future__ import annotations

import copy
import logging

import pytest
import torch

from model.masking import normalize, with_flag
from mask2former_ttt.evaluation.protocol import parse_guard_overrides
from mask2former_ttt.ttt import build_adapter
from mask2former_ttt.ttt.feature_align import FeatureAlignment
from mask2former_ttt.ttt.feature_stats import feature_reference, map_statistics
from mask2former_ttt.ttt.frames import to_working_resolution
from mask2former_ttt.ttt.objectives import mae_loss
from tests.gate_scenes import ALWAYS_OPEN, scene

UNGATED = {"shift_gate": ALWAYS_OPEN, "confidence_gate": None}


@pytest.fixture
def aligned_model(tiny_model, training):
    model = copy.deepcopy(tiny_model)
    model.cfg.feature_stats_reference = feature_reference(model, training)
    return model


def test_alignment_loss_is_the_mean_squared_z_score_over_statistics_then_maps() -> None:
    g = torch.Generator().manual_seed(0)
    maps = [torch.randn(1, c, 6, 8, generator=g) for c in (4, 8, 16, 32)]
    reference = {"mean": [map_statistics(m)[0].tolist() for m in maps],
                 "std": [(torch.rand(2 * m.shape[1], generator=g) + 0.5).tolist() for m in maps]}
    assert FeatureAlignment(reference, 1.0).loss(maps).item() == pytest.approx(0.0, abs=1e-10)
    offset = torch.randn(4, generator=g)  # per channel of the first map: moves its means, not its stds
    moved = [maps[0] + offset[None, :, None, None]] + maps[1:]
    z = offset / torch.tensor(reference["std"][0][:4])
    assert FeatureAlignment(reference, 1.0).loss(moved).item() == pytest.approx((z.pow(2).sum() / 8 / 4).item(), rel=1e-5)


def test_a_streams_objective_is_mae_plus_the_weighted_alignment_of_the_unmasked_sample(aligned_model) -> None:
    stream = build_adapter(aligned_model, "online", "full", feature_align=0.5, **UNGATED)
    x = normalize(to_working_resolution(scene(7, 0.5), aligned_model.cfg.image_size)[None], aligned_model.cfg)
    got = stream.objective(stream.forward, x, stream.cfg, torch.Generator().manual_seed(3))
    mae = mae_loss(stream.forward, x, stream.cfg, torch.Generator().manual_seed(3))
    align = FeatureAlignment(aligned_model.cfg.feature_stats_reference, 1.0).loss(aligned_model.encode(with_flag(x)))
    assert align.item() > 0.1  # the shifted scene is away from the training statistics: the term is not 0
    assert got.item() == pytest.approx((mae + 0.5 * align).item(), rel=1e-5)


def test_steps_with_alignment_bring_the_features_closer_to_the_training_statistics(aligned_model) -> None:
    ref = aligned_model.cfg.feature_stats_reference
    frame = to_working_resolution(scene(11, 0.6), aligned_model.cfg.image_size)

    def alignment_after_steps(weight: float) -> float:
        stream = build_adapter(aligned_model, "online", "full", feature_align=weight, **UNGATED)
        for _ in range(4):
            stream.step(frame)
        maps = stream.forward(with_flag(normalize(frame[None], aligned_model.cfg)), "encode")
        return FeatureAlignment(ref, 1.0).loss(maps).item()

    assert alignment_after_steps(20.0) < 0.8 * alignment_after_steps(0.0)


def test_tent_and_self_training_keep_their_own_objectives(aligned_model) -> None:
    from mask2former_ttt.ttt.objectives import entropy_loss, self_train_loss

    assert build_adapter(aligned_model, "tent", "full", feature_align=0.5, **UNGATED).objective is entropy_loss
    assert build_adapter(aligned_model, "self_train", "full", feature_align=0.5, **UNGATED).objective is self_train_loss


def test_without_the_reference_feature_align_is_off_and_the_log_says_how_to_turn_it_on(tiny_model, caplog) -> None:
    model = copy.deepcopy(tiny_model)
    model.cfg.name = "no-feature-reference"
    assert model.cfg.feature_stats_reference is None
    with caplog.at_level(logging.WARNING):
        stream = build_adapter(model, "online", "full", feature_align=0.5, **UNGATED)
    assert stream.objective.alignment is None
    assert "feature_align is off" in caplog.text and "m2f-ttt calibrate" in caplog.text


def test_evaluate_takes_feature_align_as_a_guard_field() -> None:
    assert parse_guard_overrides(["feature_align=0.1"]) == {"feature_align": 0.1}


def test_the_adapting_presets_align_features_at_the_weight_chosen_on_domain_a(aligned_model) -> None:
    """Chosen on A's validation videos among 0.01, 0.03, 0.1 and 1.0 (`default`), then measured in `full` and
    `fast`; the authors' release and the paper's rows run unguarded, without the term."""
    from mask2former_ttt.ttt.config import ttt_preset

    assert {ttt_preset(p).guard.feature_align for p in ("full", "default", "fast")} == {0.03}
    assert ttt_preset("release").guard is None
    assert build_adapter(aligned_model, "online", "full").objective.alignment.weight == 0.03
    assert build_adapter(aligned_model, "online", "full", guard=None).objective.alignment is None
