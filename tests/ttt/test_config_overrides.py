"""`ttt_preset(name, **overrides)` / `config.with_overrides`: guard fields named directly land in the preset's guard,
and anything the configuration does not have is refused instead of silently ignored."""

from __future__ import annotations

import pytest

from mask2former_ttt.ttt.config import ttt_preset


def test_a_guard_field_named_directly_changes_only_that_field_of_the_presets_guard() -> None:
    cfg = ttt_preset("default", anchor=0.05, lr=1e-3)
    assert (cfg.guard.anchor, cfg.lr) == (0.05, 1e-3)
    assert cfg.guard.predict_ema == 0.9 and cfg.guard.feature_align == 0.03  # the rest of default's guard is kept
    assert ttt_preset("default", guard={"anchor": 0.05}).guard == cfg.guard
    assert ttt_preset("default", guard=None).guard is None


@pytest.mark.parametrize("overrides", [
    {"crop": (64, 96)},  # a removed lever
    {"theta0_when_shut": False},  # now fixed behaviour of the guard
    {"guard": {"anchr": 0.5}},  # a misspelt guard field
])
def test_unknown_fields_are_refused(overrides: dict) -> None:
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        ttt_preset("full", **overrides)


def test_switching_the_guard_off_is_guard_none_and_a_guard_field_needs_a_guard() -> None:
    with pytest.raises(ValueError, match="guard=None"):
        ttt_preset("full", shift_gate=None)
    with pytest.raises(ValueError, match="runs without the safe-adaptation guard"):
        ttt_preset("release", anchor=0.01)


def test_the_schedule_is_one_choice_and_the_presets_pipeline() -> None:
    assert (ttt_preset("default").schedule, ttt_preset("fast").schedule) == ("pipelined", "pipelined")
    assert (ttt_preset("full").schedule, ttt_preset("release").schedule) == ("sync", "sync")
    assert ttt_preset("default", schedule="sync").schedule == "sync"
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        ttt_preset("default", pipelined=False)  # the boolean is the `schedule` choice
    with pytest.raises(ValueError, match="schedule"):
        ttt_preset("default", schedule="eventually")


def test_evaluate_overrides_accept_the_schedule() -> None:
    from mask2former_ttt.evaluation.protocol import parse_guard_overrides

    assert parse_guard_overrides(["schedule=pipelined"]) == {"schedule": "pipelined"}
    assert ttt_preset("full", **parse_guard_overrides(["schedule=pipelined"])).schedule == "pipelined"
    assert ttt_preset("default", **parse_guard_overrides(["schedule=async"])).schedule == "async"
