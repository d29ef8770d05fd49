"""Tune the `default` TTT preset on the VALIDATION videos only (never on test), printing one line per candidate.

    python scripts/tune_default_preset.py --model-dir model/bundled/tiny-synth --data-root data/synth

Each candidate is the `default` preset with overrides; scores are mIoU on val drift / noise / fog / clean.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from mask2former_ttt.evaluation.benchmark import read_manifest, run_benchmark
from mask2former_ttt.evaluation.protocol import Row
from mask2former_ttt.evaluation.report import aggregate

CANDIDATES: dict[str, dict] = {
    "sgd_lr3e-3": {},
    "sgd_lr1e-2": {"lr": 1e-2},
    "sgd_lr1e-3": {"lr": 1e-3},
    "anchor_0.01": {"anchor": 0.01},
    "gate_1.05": {"loss_gate": 1.05},
    "all_pixels": {"loss_on": "all"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--data-root", type=Path, default=Path("data/synth"))
    parser.add_argument("--out-dir", type=Path, default=Path("runs/tune"))
    parser.add_argument("--families", nargs="+", default=["drift", "noise", "fog", "clean"])
    parser.add_argument("--candidates", nargs="+", default=list(CANDIDATES))
    parser.add_argument("--max-frames", type=int, default=None)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    manifest = {n: f for n, f in read_manifest(args.data_root, "val").items() if f in args.families}
    rows = [Row(name="main_task_only", method="main_only")]
    rows += [Row(name=c, method="online", preset="default", overrides=CANDIDATES[c]) for c in args.candidates]
    scores = run_benchmark(args.model_dir, args.data_root, "val", sorted(manifest), rows, 1, args.out_dir, args.workers, args.max_frames)
    summary = aggregate(scores, manifest, [r.name for r in rows])
    for name, m in summary["methods"].items():
        fams = {f: round(d["miou"], 1) for f, d in m["families"].items()}
        print(json.dumps({"candidate": name, "headline": round(m["headline_miou"], 2), **fams}))


if __name__ == "__main__":
    main()
