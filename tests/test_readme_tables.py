"""README.md's results and cost tables are generated from the measurements (scripts/readme_tables.py), so a
figure in docs/benchmark/results.json or the bench JSON cannot change without the README following, and the
README stays short."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"


@pytest.fixture(scope="module")
def rt():
    spec = importlib.util.spec_from_file_location("readme_tables", REPO / "scripts" / "readme_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_the_readme_tables_are_the_generated_ones(rt) -> None:
    text = README.read_text()
    assert rt.render_readme(text) == text, "README.md's tables are stale: run scripts/readme_tables.py --write"


def test_a_changed_figure_in_results_json_changes_the_readme_table(rt) -> None:
    results = json.loads(rt.RESULTS.read_text())
    before = rt.results_table(results)
    changed = copy.deepcopy(results)
    changed["domains"]["A"]["rows"]["default_preset"]["figures"]["headline_pooled_vs_main"] += 0.5
    assert rt.results_table(changed) != before
    assert rt.results_table(changed) not in README.read_text()


def test_the_cost_table_names_its_commit_and_any_configuration_that_differs_from_today(rt) -> None:
    bench = json.loads(rt.BENCH.read_text())
    commit = bench["measured_at"]["commit"]
    table = rt.cost_table(bench)
    assert f"`{commit[:7]}`" in table
    from mask2former_ttt.evaluation.bench import LIBRARY_ROWS
    from mask2former_ttt.evaluation.provenance import method_config

    current = copy.deepcopy(bench)
    for name, recorded in current["configs"].items():  # as if timed with today's configurations
        row = next((r for r in LIBRARY_ROWS if r.name == name), None)
        if row is not None and "config" in recorded:
            current["configs"][name] = method_config(row.method, row.preset, row.overrides)
    assert "with the configurations the presets resolve to today" in rt.cost_table(current)
    current["configs"]["default"]["config"]["lr"] = 1.0
    assert "`default`: lr" in rt.cost_table(current)
    del current["configs"]
    assert "were not recorded" in rt.cost_table(current)


def test_the_readme_is_short() -> None:
    assert len(README.read_text().splitlines()) <= 150
