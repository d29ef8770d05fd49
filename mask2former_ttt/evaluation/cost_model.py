"""Per-frame costs for camera-rate replays, read from a bench JSON written by `m2f-ttt bench`
(docs/benchmark/bench_quick_cpu.json by default: one torch thread on this machine's CPU).

P (the prediction cost of a frame, every row) = `rows.main_only.s_per_frame`: predict + post-process + encode.
S (the cost of one TTT step of a row) = (`rows.<row>.s_per_frame` − `rows.main_only.s_per_frame`) /
`rows.<row>.steps_per_frame`: everything the row costs beyond plain inference (sampling, TTT forward, backward,
optimizer, and the guard's per-frame work), per step taken, as the bench amortized it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from mask2former_ttt.evaluation.bench import LIBRARY_ROWS
from mask2former_ttt.evaluation.camera_rate import FrameCosts
from mask2former_ttt.evaluation.protocol import Row

DEFAULT_COST_MODEL = Path(__file__).resolve().parents[2] / "docs" / "benchmark" / "bench_quick_cpu.json"
MAIN = "main_only"
# overrides that leave a step's cost as the bench measured it: when the step runs, not what it computes
COST_NEUTRAL_OVERRIDES = ("schedule", "pipelined")


@dataclass(frozen=True)
class CostModel:
    """The bench rows a replay takes its costs from: name -> (s_per_frame, steps_per_frame), and the file."""

    path: str
    rows: dict[str, tuple[float, float]]
    digest: str  # of the rows' figures: a cached camera-rate score is keyed by it
    measured_at: str | None = None  # the commit the bench ran at
    threads: int | None = None

    @property
    def predict_s(self) -> float:
        """P: `main_only`'s seconds per frame."""
        return self.rows[MAIN][0]

    def step_s(self, bench_row: str) -> float:
        """S of `bench_row`: its seconds per frame beyond `main_only`'s, per step taken (0 for a row without
        steps). ValueError for a row the file lacks or whose figures are inconsistent."""
        if bench_row not in self.rows:
            raise ValueError(f"{self.path} has no bench row {bench_row!r} (rows: {sorted(self.rows)})")
        s_per_frame, steps = self.rows[bench_row]
        if steps == 0:
            return 0.0
        extra = s_per_frame - self.predict_s
        if extra < 0:
            raise ValueError(f"{self.path}: {bench_row} costs less per frame than {MAIN}; no step cost to derive")
        return extra / steps

    def costs(self, bench_row: str) -> FrameCosts:
        return FrameCosts(self.predict_s, self.step_s(bench_row))

    def describe(self, bench_row: str) -> str:
        """How P and S of `bench_row` were derived, with the figures."""
        p = f"P = {MAIN}.s_per_frame {1000 * self.predict_s:.2f} ms"
        if bench_row == MAIN or self.rows[bench_row][1] == 0:
            return f"{bench_row}: {p}; no steps"
        s_per_frame, steps = self.rows[bench_row]
        return (f"{bench_row}: {p}; S = ({1000 * s_per_frame:.2f} − {1000 * self.predict_s:.2f} ms) / "
                f"{steps:g} steps per frame = {1000 * self.step_s(bench_row):.2f} ms per step")


def load_cost_model(path: Path = DEFAULT_COST_MODEL) -> CostModel:
    """The cost model of a bench JSON (its `rows.<name>.s_per_frame` and `steps_per_frame`); ValueError without
    a `main_only` row."""
    doc = json.loads(Path(path).read_text())
    rows = {name: (float(r["s_per_frame"]), float(r["steps_per_frame"])) for name, r in doc.get("rows", {}).items()}
    if MAIN not in rows:
        raise ValueError(f"{path}: no rows.{MAIN} (the prediction cost P); is it a `m2f-ttt bench` JSON?")
    digest = hashlib.sha1(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:10]
    return CostModel(str(path), rows, digest, (doc.get("measured_at") or {}).get("commit"),
                     (doc.get("machine") or {}).get("threads"))


def bench_row_of(row: Row) -> str:
    """The bench row (`bench.LIBRARY_ROWS`) whose costs `row` has: `main_only` for the main-task-only method (it
    takes no step whatever its preset), else the one with the same method, preset and overrides (those in
    `COST_NEUTRAL_OVERRIDES` aside). ValueError when none matches."""
    if row.method == MAIN:
        return MAIN
    overrides = {k: v for k, v in row.overrides.items() if k not in COST_NEUTRAL_OVERRIDES}
    for bench in LIBRARY_ROWS:
        if (bench.method, bench.preset, dict(bench.overrides)) == (row.method, row.preset, overrides):
            return bench.name
    raise ValueError(f"row {row.name!r} ({row.method}, preset {row.preset}, overrides {overrides}) has no measured "
                     f"cost: camera-rate replays cover the bench rows {[b.name for b in LIBRARY_ROWS]}")
