"""Each adapting preset's docstring says what it is and why in at most six lines, and quotes its current
measured gain and cost, read from the committed measurements (docs/benchmark/results.json, bench_quick_cpu.json):
a re-measured preset cannot keep old figures in its description."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mask2former_ttt.ttt.config import TTT_PRESETS

BENCHMARK = Path(__file__).resolve().parents[2] / "docs" / "benchmark"
NUMBER = r"([+−-]?\d+\.\d+)"
GAINS = re.compile(rf"A {NUMBER} \(clean {NUMBER}\), B {NUMBER} \(clean {NUMBER}\)")
COST = re.compile(r"(\d+\.\d+)× `main_only`")


def _value(text: str) -> float:
    return float(text.replace("−", "-"))


@pytest.mark.parametrize("name", ["full", "default", "fast"])
def test_the_docstring_quotes_the_current_gain_and_cost(name: str) -> None:
    doc = TTT_PRESETS[name].__doc__ or ""
    assert len(doc.strip().splitlines()) <= 6
    results = json.loads((BENCHMARK / "results.json").read_text())["domains"]
    text = " ".join(doc.split())  # the figures may wrap across lines
    quoted = GAINS.search(text)
    assert quoted, f"{name}'s docstring quotes no gains in the form 'A +x (clean y), B +z (clean w)'"
    want = []
    for domain in ("A", "B"):
        figures = results[domain]["rows"][f"{name}_preset"]["figures"]
        want += [figures["headline_pooled_vs_main"], figures["families"]["clean"]["miou_pooled_vs_main"]]
    assert [_value(v) for v in quoted.groups()] == pytest.approx([round(w, 2) for w in want], abs=0.006)
    bench = json.loads((BENCHMARK / "bench_quick_cpu.json").read_text())
    cost = COST.search(text)
    assert cost, f"{name}'s docstring quotes no cost in the form 'N.NN× `main_only`'"
    assert _value(cost.group(1)) == pytest.approx(round(bench["rows"][name]["ratio"], 2), abs=0.006)
