"""Merge `m2f-ttt evaluate` runs into the `domains` block of docs/benchmark/results.json.

    python scripts/add_domains.py --domain B --run runs/testB_q --run runs/testB_z:_zguard \\
        --note "aerial (held out): model trained with m2f-ttt train on its stills"

Each `--run DIR[:SUFFIX]` is an evaluate out-dir (its results.json); its rows are added to the domain, names
suffixed with SUFFIX when given (two runs of the same rows under different guards). `main_task_only` must agree
across the runs merged into one domain (it draws no random numbers), so the paired Δ columns stay comparable.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def merge(runs: list[str]) -> dict:
    methods: dict = {}
    main = None
    for spec in runs:
        path, _, suffix = spec.partition(":")
        result = json.loads((Path(path) / "results.json").read_text())
        for name, row in result["methods"].items():
            if name == "main_task_only":
                fams = {f: round(v["miou"], 3) for f, v in row["families"].items()}
                if main is not None and any(abs(fams[f] - main[f]) > 0.05 for f in fams if f in main):
                    raise SystemExit(f"{path}: main_task_only differs from the other runs: {fams} vs {main}")
                main = {**(main or {}), **fams}
                row = {**row, "run": path}
                methods[name] = _union(methods[name], row) if name in methods else row
                continue
            guarded = _guarded(name)
            row = {**row, "guard": result.get("protocol", {}).get("guard") if guarded else None, "run": path}
            key = name + (suffix if guarded else "")
            methods[key] = _union(methods[key], row) if key in methods else row
    return methods


def _guarded(name: str) -> bool:
    """Does the standard row `name` run with the safe-adaptation guard (so a --guard override reached it)?"""
    from mask2former_ttt.evaluation.protocol import rows_by_name
    from mask2former_ttt.ttt.config import ttt_preset

    row = rows_by_name([name])[-1]
    return ttt_preset(row.preset, **row.overrides).shift_gate is not None


def _union(a: dict, b: dict) -> dict:
    """One row measured in two runs over different families: families, videos and final_clean side by side."""
    out = {**a, "families": {**a["families"], **b["families"]}, "videos": {**a.get("videos", {}), **b.get("videos", {})},
           "run": f"{a['run']} + {b['run']}", "runs": a["runs"] + b["runs"]}
    out["final_clean"] = a.get("final_clean") or b.get("final_clean")
    if a.get("headline_vs_main") is None:
        out["headline_vs_main"], out["headline_miou"] = b.get("headline_vs_main"), b.get("headline_miou")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--domain", required=True)
    ap.add_argument("--run", action="append", required=True)
    ap.add_argument("--note", default="")
    ap.add_argument("--results", type=Path, default=Path("docs/benchmark/results.json"))
    args = ap.parse_args()
    summary = json.loads(args.results.read_text())
    summary.setdefault("domains", {})[args.domain] = {"note": args.note, "methods": merge(args.run)}
    args.results.write_text(json.dumps(summary, indent=2))
    for name, row in summary["domains"][args.domain]["methods"].items():
        clean = row["families"].get("clean", {}).get("miou_vs_main")
        print(f"{args.domain} {name}: drift+noise+fog {row['headline_vs_main']}, clean {clean}")


if __name__ == "__main__":
    main()
