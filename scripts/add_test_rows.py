"""Run some benchmark rows on the TEST videos and merge them into docs/benchmark/results.{json,md}.

    python scripts/add_test_rows.py --rows default_preset fast_preset --extra default_preset_unpipelined

The committed table holds rows measured in earlier sessions whose per-video caches are not kept; this runs the
named rows (plus Main Task Only, which draws no random numbers, so it reproduces the earlier Main exactly and the
paired Δ column stays paired) with the standard protocol (every test video, 2 mask seeds), aggregates them with
`evaluation/report.aggregate` and replaces or adds those rows in the committed summary. `--rename OLD=NEW`
renames a committed row first (a preset that changed name keeps its measured numbers).
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
from pathlib import Path

from mask2former_ttt.evaluation.benchmark import read_manifest, run_benchmark
from mask2former_ttt.evaluation.protocol import Row, rows_by_name
from mask2former_ttt.evaluation.report import aggregate, markdown_table, safe_adaptation

EXTRA_ROWS = {
    # the default preset without pipelining: what pipelined prediction costs in quality
    "default_preset_unpipelined": Row(name="default_preset_unpipelined", method="online", preset="default",
                                      overrides={"pipelined": False}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", nargs="+", default=["default_preset", "fast_preset"])
    parser.add_argument("--extra", nargs="*", default=[], choices=list(EXTRA_ROWS))
    parser.add_argument("--rename", nargs="*", default=[], help="OLD=NEW renames of committed rows")
    parser.add_argument("--model-dir", type=Path, default=Path("model/bundled/tiny-synth"))
    parser.add_argument("--data-root", type=Path, default=Path("data/synth"))
    parser.add_argument("--out-dir", type=Path, default=Path("runs/test_rows"))
    parser.add_argument("--docs", type=Path, default=Path("docs/benchmark"))
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)

    manifest = read_manifest(args.data_root, "test")
    rows = rows_by_name(["main_task_only", *args.rows]) + [EXTRA_ROWS[n] for n in args.extra]
    scores = run_benchmark(args.model_dir, args.data_root, "test", sorted(manifest), rows, args.seeds, args.out_dir,
                           args.workers)
    fresh = aggregate(scores, manifest, [r.name for r in rows])["methods"]

    path = args.docs / "results.json"
    summary = json.loads(path.read_text())
    for pair in args.rename:
        old, new = pair.split("=")
        summary["methods"][new] = summary["methods"].pop(old)
    committed_main = summary["methods"]["main_task_only"]["families"]
    for fam, figures in fresh["main_task_only"]["families"].items():
        if fam not in committed_main:  # a family the data gained since the committed run (Main draws nothing random)
            committed_main[fam] = figures
            print(f"main_task_only: family {fam!r} added from this run")
            continue
        if abs(figures["miou"] - committed_main[fam]["miou"]) > 0.05:
            raise SystemExit(f"Main Task Only differs from the committed run on {fam}: {figures['miou']:.2f} vs "
                             f"{committed_main[fam]['miou']:.2f}; the paired deltas would not be comparable")
    base = summary["methods"]["main_task_only"]["s_per_frame"]
    for name in [*args.rows, *args.extra]:
        row = fresh[name]
        # this run's own ratio (timings of one run are only comparable within it)
        row["ratio_to_main"] = row["s_per_frame"] / fresh["main_task_only"]["s_per_frame"]
        row["session"] = f"{datetime.date.today().isoformat()} (scripts/add_test_rows.py)"
        summary["methods"][name] = row
    summary["methods"]["main_task_only"]["s_per_frame"] = base
    summary["safe_adaptation"] = safe_adaptation(summary)
    path.write_text(json.dumps(summary, indent=2))
    (args.docs / "results.md").write_text(markdown_table(summary))
    for name in ["main_task_only", *args.rows, *args.extra]:
        m = fresh[name]
        print(json.dumps({"row": name, "headline_vs_main": m["headline_vs_main"], "ratio": m["ratio_to_main"],
                          "clean": m["families"].get("clean", {}).get("miou_vs_main")}))


if __name__ == "__main__":
    main()
