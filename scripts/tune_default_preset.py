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

# session 1 chose SGD lr 3e-3 with kept momentum, B = 4, masked-pixel loss (1 val world); session 2 sweeps the
# θ0 anchor of the safe-adaptation guard on 3 val worlds. A loss gate (skip steps while ℓ_s is near its clean
# training level) was ruled out on val: ℓ_s at θ0 is 1.1-1.4× the reference on clean videos but 0.1-1.0× on
# contrast and fog, whose gains the gate would throw away.
CANDIDATES: dict[str, dict] = {
    "sgd_lr3e-3": {"anchor": 0.0},
    "sgd_lr1e-2": {"lr": 1e-2, "anchor": 0.0},
    "sgd_lr1e-3": {"lr": 1e-3, "anchor": 0.0},
    "all_pixels": {"loss_on": "all", "anchor": 0.0},
    "gate_1.05": {"loss_gate": 1.05, "anchor": 0.0},
    "anchor_0.01": {"anchor": 0.01},
    "anchor_0.02": {"anchor": 0.02},
    "anchor_0.03": {"anchor": 0.03},
    "anchor_0.05": {"anchor": 0.05},
    # the shift gate: steps scaled by how far the frame's low-level statistics are from the training images'
    "shift_2_3.5": {"shift_gate": (2.0, 3.5), "anchor": 0.01},
    "shift_2.5_4": {"shift_gate": (2.5, 4.0), "anchor": 0.01},
    "shift_3_5": {"shift_gate": (3.0, 5.0), "anchor": 0.01},
    "shift_2.5_4_no_anchor": {"shift_gate": (2.5, 4.0), "anchor": 0.0},
}
SESSION_2 = ["sgd_lr3e-3", "anchor_0.01", "anchor_0.02", "anchor_0.03", "anchor_0.05"]
SHIFT_GATES = ["shift_2_3.5", "shift_2.5_4", "shift_3_5", "shift_2.5_4_no_anchor"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--data-root", type=Path, default=Path("data/synth"))
    parser.add_argument("--out-dir", type=Path, default=Path("runs/tune"))
    parser.add_argument("--families", nargs="+", default=["drift", "noise", "fog", "clean"])
    parser.add_argument("--candidates", nargs="+", default=SESSION_2 + SHIFT_GATES, choices=list(CANDIDATES))
    parser.add_argument("--max-frames", type=int, default=None)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    manifest = {n: f for n, f in read_manifest(args.data_root, "val").items() if f in args.families}
    rows = [Row(name="main_task_only", method="main_only", panoptic_metrics=False)]
    rows += [Row(name=c, method="online", preset="full", overrides=CANDIDATES[c], panoptic_metrics=False)
             for c in args.candidates]
    scores = run_benchmark(args.model_dir, args.data_root, "val", sorted(manifest), rows, 1, args.out_dir, args.workers, args.max_frames)
    summary = aggregate(scores, manifest, [r.name for r in rows])
    for name, m in summary["methods"].items():
        fams = {f: round(d["miou"], 1) for f, d in m["families"].items()}
        gain = m["headline_vs_main"]
        clean = m["families"]["clean"]["miou_vs_main"] if "clean" in fams else None
        print(json.dumps({"candidate": name, "headline": round(m["headline_miou"], 2), "gain": round(gain, 2),
                          "clean_delta": None if clean is None else round(clean, 2), **fams}))


if __name__ == "__main__":
    main()
