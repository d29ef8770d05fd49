"""The feature gate: the frozen encoder's feature statistics against the training images' (ttt/feature_shift.py),
and how it opens the safe-adaptation guard where the pixel score stays closed."""

from __future__ import annotations

import copy
import logging

import pytest

from mask2former_ttt.ttt import build_adapter
from mask2former_ttt.ttt.feature_shift import (
    FeatureReferenceMissing,
    feature_gate_in_use,
    feature_reference,
    feature_shift_score,
)
from mask2former_ttt.ttt.frames import to_working_resolution
from tests.gate_scenes import (
    NEVER,
    check_gate_opens_where_the_pixel_gate_stays_closed,
    check_score_is_theta0s,
    pixel_gated,
    scene,
)

ALWAYS = (-2.0, -1.0)  # a feature gate that is always open


@pytest.fixture
def gated_model(tiny_model, training):
    model = pixel_gated(tiny_model, training)
    model.cfg.feature_stats_reference = feature_reference(model, training)
    return model


def test_reference_has_per_map_statistics_and_tail_units(tiny_model, training) -> None:
    ref = feature_reference(tiny_model, training)
    channels = [tiny_model.cfg.swin.embed_dim * 2**s for s in range(4)]
    assert [len(m) for m in ref["mean"]] == [len(s) for s in ref["std"]] == [2 * c for c in channels]
    assert len(ref["median"]) == len(ref["q_high"]) == 4
    assert all(0 < m < q for m, q in zip(ref["median"], ref["q_high"]))
    # the training images score inside their own tail (1.0 = each map's 99.5 % quantile, interpolated between the
    # two most atypical of 24), the typical one near 0 (the largest over four maps is a little above each map's 0)
    scores = sorted(feature_shift_score(tiny_model, f, ref) for f in training)
    assert scores[-3] <= 1.0 and scores[-1] < 1.2 and 0.0 <= scores[len(scores) // 2] < 0.5


def test_score_grows_with_the_shift(gated_model, tiny_model) -> None:
    ref = gated_model.cfg.feature_stats_reference

    def score(shift: float) -> float:
        return feature_shift_score(gated_model, to_working_resolution(scene(99, shift), tiny_model.cfg.image_size), ref)

    scores = [score(s) for s in (0.0, 0.3, 0.6)]  # (at 1.0 the inverted blocks are random colours again)
    assert scores[0] < 1.0 < scores[2] and scores == sorted(scores)


def test_feature_gate_opens_where_the_pixel_gate_stays_closed(gated_model) -> None:
    check_gate_opens_where_the_pixel_gate_stays_closed(gated_model, scene(99, 0.6), "feature_gate", "feature_score", ALWAYS)


def test_score_is_measured_with_theta0_not_the_adapted_weights(gated_model) -> None:
    """Adaptation must not close the gate by pulling the stream's own features back toward the training ones."""
    check_score_is_theta0s(gated_model, scene(99, 0.6), "feature_gate", "feature_score", ALWAYS)


def test_pixel_gate_fully_open_skips_the_feature_forward(gated_model) -> None:
    a = build_adapter(gated_model, "online", "full", shift_gate=(-2.0, -1.0), feature_gate=ALWAYS)
    r = a.step(scene(99, 0.6))
    assert r.stats.step_scale == 1.0 and r.stats.feature_score is None


def test_checkpoint_without_feature_reference_runs_with_the_gate_off_and_says_how_to_turn_it_on(
    gated_model, caplog
) -> None:
    model = copy.deepcopy(gated_model)
    model.cfg.feature_stats_reference = None
    model.cfg.name = "uncalibrated-for-this-test"
    with caplog.at_level(logging.WARNING):
        a = build_adapter(model, "online", "full", shift_gate=NEVER, feature_gate=ALWAYS)
    assert "m2f-ttt calibrate" in caplog.text
    r = a.step(scene(99, 0.6))
    assert r.stats.step_scale == 0.0 and r.stats.feature_score is None
    assert feature_gate_in_use(gated_model.cfg, a.cfg) == ALWAYS


def test_scoring_against_a_missing_or_foreign_reference_names_the_problem(gated_model, tiny_model) -> None:
    frame = to_working_resolution(scene(1), tiny_model.cfg.image_size)
    with pytest.raises(FeatureReferenceMissing, match="m2f-ttt calibrate"):
        feature_shift_score(gated_model, frame, None)
    foreign = copy.deepcopy(gated_model.cfg.feature_stats_reference)
    foreign["mean"][0] = foreign["mean"][0][:-2]
    with pytest.raises(ValueError, match="calibrated for another model"):
        feature_shift_score(gated_model, frame, foreign)


def test_score_is_the_largest_distance_over_maps_in_units_of_each_maps_training_tail(tiny_model) -> None:
    from mask2former_ttt.ttt.feature_shift import encoder_statistics

    frame = to_working_resolution(scene(5), tiny_model.cfg.image_size)
    stats = [s[0] for s in encoder_statistics(tiny_model, frame[None])]
    # every statistic 2 standard deviations (std 0.5) from the reference mean: distance 2 on every map
    ref = {"mean": [(s - 1.0).tolist() for s in stats], "std": [[0.5] * len(s) for s in stats],
           "median": [1.0, 0.5, 1.8, 3.0], "q_high": [3.0, 1.0, 2.3, 3.5]}
    # per map (2 - median) / (q_high - median): 0.5, 3.0, 0.4, -2.0 -> the largest
    assert feature_shift_score(tiny_model, frame, ref) == pytest.approx(3.0, rel=1e-5)
