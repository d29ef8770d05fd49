"""The benchmark's rows, their run order and the cache key of a job."""

from __future__ import annotations

from pathlib import Path

import pytest

from mask2former_ttt.evaluation.benchmark import job_priority, run_key
from mask2former_ttt.evaluation.protocol import (
    HEADLINE_ROWS,
    UNGUARDED,
    Row,
    rows_by_name,
    standard_rows,
    with_shuffled_twins,
)

TABLE = ["main_task_only", "no_memory", "implicit_only", "explicit_only", "online_k1", "online_k4", "online_k16",
         "online_k64", "offline_all_frames", "ln_adapt", "tent", "self_train", "online_shuffled", "release_preset",
         "full_preset", "default_preset", "fast_preset"]
PRESET_ROWS = {"release_preset": "release", "full_preset": "full", "default_preset": "default", "fast_preset": "fast"}


def test_standard_rows_are_the_issue_table_and_only_the_preset_rows_are_guarded() -> None:
    rows = {r.name: r for r in standard_rows()}
    assert list(rows) == TABLE
    for name, preset in PRESET_ROWS.items():
        assert rows[name].preset == preset and rows[name].overrides == {}, name
    for name in set(TABLE) - set(PRESET_ROWS):
        assert rows[name].preset == "full", name  # the paper's rows: every frame, B = 4 full frames
        assert {k: rows[name].overrides[k] for k in UNGUARDED} == UNGUARDED, name
    assert rows["online_k1"].alias_of == "implicit_only"
    assert rows["online_shuffled"].shuffle_frames
    assert rows["main_task_only"].seeds == 1 and rows["ln_adapt"].seeds == 1


def test_k_sweep_and_named_subsets() -> None:
    names = [r.name for r in rows_by_name(None, (2, 8))]
    assert "online_k2" in names and "online_k8" in names and "online_k16" not in names
    assert [r.name for r in rows_by_name(["online_k1"])] == ["implicit_only", "online_k1"]  # alias brings its source
    with pytest.raises(ValueError, match="unknown rows"):
        rows_by_name(["online_k3"])


def test_shuffled_twins_for_adapting_rows_only() -> None:
    rows = with_shuffled_twins(rows_by_name(["main_task_only", "default_preset", "online_shuffled", "online_k1"]))
    names = [r.name for r in rows]
    assert "default_preset_shuffled" in names and "implicit_only_shuffled" in names
    assert "main_task_only_shuffled" not in names  # nothing to learn from order
    assert "online_k1_shuffled" not in names and "online_shuffled_shuffled" not in names
    twin = next(r for r in rows if r.name == "default_preset_shuffled")
    assert twin.shuffle_frames and twin.preset == "default"


def test_job_order_headline_first_release_last_in_its_tier_then_world_by_world() -> None:
    rows = {r.name: r for r in standard_rows() if r.alias_of is None}
    order = list(rows)

    def key(video: str, row: str, seed: int) -> tuple:
        return job_priority(video, rows[row], seed, order)

    assert key("test-fog-w02", "online_shuffled", 1) < key("test-fog-w00", "tent", 0)  # headline, any seed, first
    assert key("test-fog-w02", "default_preset", 1) < key("test-fog-w00", "release_preset", 0)
    assert key("test-fog-w00", "release_preset", 0) < key("test-blur-w00", "tent", 0)
    assert key("test-fog-w00", "tent", 0) < key("test-blur-w01", "no_memory", 0)  # world 0 of every row first
    assert key("test-fog-w02", "tent", 0) < key("test-blur-w00", "tent", 1)  # second seeds last
    assert set(HEADLINE_ROWS) <= set(rows)


def test_run_key_follows_model_and_resolved_configuration(tmp_path: Path) -> None:
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    row = Row(name="a", method="online")
    base = run_key(model_dir, row, None)
    assert run_key(model_dir, row.model_copy(update={"name": "b"}), None) == base  # the name is not the content
    assert run_key(model_dir, row.model_copy(update={"overrides": {"lr": 1e-2}}), None) != base
    assert run_key(model_dir, row, 50) != base
    (model_dir / "config.json").write_text('{"changed": true}')
    assert run_key(model_dir, row, None) != base


def test_the_papers_rows_run_unguarded_and_the_presets_guarded() -> None:
    from mask2former_ttt.evaluation.protocol import rows_by_name
    from mask2former_ttt.ttt.config import ttt_preset

    def guard(name: str):
        row = rows_by_name([name])[0]
        return ttt_preset(row.preset, **row.overrides).guard

    assert guard("online_k16") is guard("tent") is guard("self_train") is guard("main_task_only") is None
    assert guard("full_preset").feature_align == guard("default_preset").feature_align == 0.03
