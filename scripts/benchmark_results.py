"""Regenerate `docs/benchmark/results.json` (and `results.md`): one record per domain × row.

    .venv/bin/python scripts/benchmark_results.py --domain A=data/synth --domain B=data/aerial

runs the protocol's evaluation on each domain's test videos (`m2f-ttt evaluate`'s jobs: cached per (video, row,
seed) under `--out-dir`, so an interrupted run resumes where it stopped), then writes, for every row, its figures
(per family: mean per-video and pooled mIoU, Δ against `main_task_only`; per video; per mask seed; the final clean
stretch of the return videos), the row's resolved `TTTConfig`, the commit it ran at (`git rev-parse HEAD` and
whether the tree had uncommitted changes) and the command. A data root that does not exist yet is generated first
with the protocol's settings (`m2f-ttt generate`, seed 0; domain A street, domain B aerial). Domain B is scored
with its own checkpoint (`docs/benchmark/checkpoints/tiny-aerial`) unless `--model-dir B=DIR` says otherwise.
Domains not named keep their records.

    .venv/bin/python scripts/benchmark_results.py --restamp-configs

rewrites only the `config` entry of every record from the code (`ttt_preset(row.preset, **row.overrides)`),
keeping the figures and the commit they were measured at. Use it only after a refactor proven to preserve
behaviour (e.g. a field renamed or moved, tests unchanged): the configuration check
(`tests/evaluation/test_results_records.py`) fails whenever a preset's resolved configuration differs from the
recorded one, so that a preset change cannot land without re-measuring.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from mask2former_ttt.evaluation.provenance import git_state
from mask2former_ttt.evaluation.report import RECORDS_SCHEMA as SCHEMA

RESULTS = REPO / "docs" / "benchmark" / "results.json"
ROWS = ("main_task_only", "full_preset", "default_preset", "fast_preset", "online_k16")
FAMILIES = ("drift", "noise", "fog", "clean", "return")
SEEDS = 2
DOMAINS = {
    "A": {"generator": "street", "model": None,
          "description": "street scenes (m2f-ttt generate --domain street): the generator every preset was tuned on "
                         "(validation videos only)"},
    "B": {"generator": "aerial", "model": "docs/benchmark/checkpoints/tiny-aerial",
          "description": "aerial scenes (m2f-ttt generate --domain aerial: 7 classes, its own renderer, camera and "
                         "corruption code), held out from all tuning"},
    "A-prepared": {"generator": "street", "model": None, "needs_model_dir": True,
                   "description": "domain A's videos, scored with a model trained on A's labels for the main task only "
                                  "(`m2f-ttt train --main-task-only`, recipe defaults) and made TTT-ready from A's "
                                  "training stills without their labels (`m2f-ttt prepare MODEL DATA_A/images/train "
                                  "-o OUT`, defaults)"},
    "A-prepared-encoder": {"generator": "street", "model": None, "needs_model_dir": True,
                           "description": "as A-prepared, then `m2f-ttt prepare A-PREPARED DATA_A/images/train -o OUT "
                                          "--adapt-encoder --steps 200` (f trained too, with self-distillation)"},
    "B-prepared": {"generator": "aerial", "model": None, "needs_model_dir": True,
                   "description": "domain B's videos, scored with a model trained on B's labels for the main task only "
                                  "and prepared from B's training stills without labels, as A-prepared"},
    "B-prepared-encoder": {"generator": "aerial", "model": None, "needs_model_dir": True,
                           "description": "as B-prepared, then prepared again with `--adapt-encoder --steps 200`"},
}


def resolved_config(row_name: str) -> dict:
    """The row's TTT configuration as the code resolves it today."""
    from mask2former_ttt.evaluation.protocol import rows_by_name
    from mask2former_ttt.ttt.config import ttt_preset

    row = next(r for r in rows_by_name([row_name]) if r.name == row_name)
    return ttt_preset(row.preset, **row.overrides).model_dump(mode="json")


def row_spec(row_name: str) -> dict:
    from mask2former_ttt.evaluation.protocol import rows_by_name

    row = next(r for r in rows_by_name([row_name]) if r.name == row_name)
    return {"method": row.method, "preset": row.preset}


def load_results(path: Path) -> dict:
    if path.is_file():
        data = json.loads(path.read_text())
        if data.get("schema") == SCHEMA:
            return data
        raise SystemExit(f"{path} is not a records file ({SCHEMA!r}); refusing to overwrite it")
    return {"schema": SCHEMA, "domains": {}}


def write_results(results: dict, path: Path) -> None:
    results["schema"] = SCHEMA
    results["generated_by"] = ("scripts/benchmark_results.py: regenerate, never edit by hand; "
                               "README tables: scripts/readme_tables.py")
    results["domains"] = dict(sorted(results["domains"].items()))
    path.write_text(json.dumps(results, indent=2) + "\n")
    path.with_suffix(".md").write_text(render_markdown(results))


def _figures(summary_row: dict) -> dict:
    keep = ("families", "headline_miou", "headline_vs_main", "headline_pooled_vs_main", "final_clean", "videos",
            "s_per_frame", "ratio_to_main", "rollbacks", "runs")
    return {k: summary_row.get(k) for k in keep}


def records_from_scores(scores: list, family_of: dict[str, str], rows: list[str], final_clean: dict,
                        seeds: int) -> dict[str, dict]:
    """Row -> figures: `aggregate`'s, plus each mask seed's pooled drift+noise+fog Δ (Main runs once: it draws no
    masks, so every seed is paired with its seed-0 run)."""
    from mask2former_ttt.evaluation.report import aggregate

    summary = aggregate(scores, family_of, rows, final_clean)
    out = {}
    for row in rows:
        figures = _figures(summary["methods"][row])
        per_seed = {}
        for seed in range(seeds):
            subset = [s for s in scores if (s.row == "main_task_only" and s.seed == 0)
                      or (s.row == row and s.seed == seed)]
            if row != "main_task_only" and any(s.row == row for s in subset):
                value = aggregate(subset, family_of, ["main_task_only", row])["methods"][row]["headline_pooled_vs_main"]
                per_seed[str(seed)] = value
        figures["per_seed_pooled_headline_vs_main"] = per_seed or None
        out[row] = figures
    return out


def run_domain(name: str, data_root: Path, model_dir: Path | None, out_dir: Path, rows: list[str],
               families: list[str], seeds: int, workers: int, threads: int | None, max_frames: int | None,
               split: str = "test") -> dict[str, dict]:
    """Evaluate `rows` on the domain's videos (cached jobs under `out_dir`) and return its records."""
    from mask2former_ttt.evaluation.benchmark import final_clean_ranges, read_manifest, run_benchmark
    from mask2former_ttt.evaluation.compat import check_model_matches_data
    from mask2former_ttt.evaluation.protocol import rows_by_name
    from model.checkpoint import bundled_model_dir

    if not (data_root / "videos.json").is_file():
        from mask2former_ttt.cli import generate

        generate(root=data_root, train_stills=2000, frames=200, test_worlds=3, val_worlds=3, seed=0, workers=workers,
                 overwrite=False, domain=DOMAINS.get(name, DOMAINS["A"])["generator"])
    model = model_dir or bundled_model_dir()
    check_model_matches_data(model, data_root, split, model_dir is None)
    manifest = {v: fam or "real" for v, fam in read_manifest(data_root, split).items()}
    manifest = {v: fam for v, fam in manifest.items() if fam in families}
    if not manifest:
        raise SystemExit(f"no {split} videos of families {families} under {data_root}")
    selected = rows_by_name(["main_task_only", *rows])
    final_clean = final_clean_ranges(data_root, split, manifest, max_frames)
    scores = run_benchmark(model, data_root, split, sorted(manifest), selected, seeds, out_dir / name, workers,
                           max_frames, families=manifest, threads=threads, segments=final_clean)
    names = [r.name for r in selected]
    figures = records_from_scores(scores, manifest, names, final_clean, seeds)
    return {row: figures[row] for row in names if row in rows or row == "main_task_only"}


def make_record(row: str, figures: dict, measured_at: dict, command: str, protocol: dict) -> dict:
    return {"row": row_spec(row), "config": resolved_config(row), "measured_at": measured_at, "command": command,
            "protocol": protocol, "figures": figures}


def restamp_configs(results: dict) -> list[str]:
    """Re-resolve every record's `config` from the code; returns the rows whose configuration changed."""
    changed = []
    for domain, block in results["domains"].items():
        for row, record in block["rows"].items():
            config = resolved_config(row)
            if config != record.get("config"):
                changed.append(f"{domain}/{row}")
            record["config"] = config
            record["row"] = row_spec(row)
    return changed


def _fmt(value: float | None, digits: int = 2, signed: bool = True) -> str:
    if value is None:
        return "–"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def render_markdown(results: dict) -> str:
    """results.md: per domain, each row's pooled and mean per-video Δ mIoU per family, per-seed headline."""
    lines = ["# Benchmark results", "",
             ("Generated from `results.json` by `scripts/benchmark_results.py` (do not edit). Δ: mIoU against "
             "`main_task_only` on the same videos; pooled: one confusion matrix over a family's videos and seeds "
             "(as dataset evaluators count); per video: the mean of each run's Δ. \"after return\": the clean "
             "stretch that ends a drift-and-return video, mean per-frame Δ. The `main_task_only` row gives the "
             "mIoU itself."), ""]
    for domain, block in results["domains"].items():
        lines += [f"## Domain {domain}", "", block["description"] + ".", ""]
        rows = block["rows"]
        fams = [f for f in FAMILIES if any(f in r["figures"]["families"] for r in rows.values())]
        fams += sorted({f for r in rows.values() for f in r["figures"]["families"]} - set(fams))
        head = ["row", "drift+noise+fog pooled Δ", "per seed", *(f"{f} pooled Δ (per video)" for f in fams),
                "after return Δ", "commit"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for name, rec in rows.items():
            fig = rec["figures"]
            final = fig.get("final_clean") or {}
            if name == "main_task_only":  # the reference: its mIoU, pooled (per video)
                pooled = [fig["families"].get(f, {}).get("miou_pooled") for f in ("drift", "noise", "fog")]
                cells = [f"`{name}` (mIoU)", _fmt(sum(pooled) / 3 if None not in pooled else None, 1, False), "–"]
                for f in fams:
                    fam = fig["families"].get(f)
                    cells.append("–" if fam is None else f"{_fmt(fam.get('miou_pooled'), 1, False)} "
                                 f"({_fmt(fam.get('miou'), 1, False)})")
                cells.append(_fmt(final.get("miou"), 1, False))
            else:
                seeds = fig.get("per_seed_pooled_headline_vs_main") or {}
                cells = [f"`{name}`", _fmt(fig.get("headline_pooled_vs_main")),
                         " / ".join(_fmt(v) for v in seeds.values()) or "–"]
                for f in fams:
                    fam = fig["families"].get(f)
                    cells.append("–" if fam is None else
                                 f"{_fmt(fam.get('miou_pooled_vs_main'))} ({_fmt(fam.get('miou_vs_main'))})")
                cells.append(_fmt(final.get("miou_vs_main")))
            commit = rec["measured_at"].get("commit") or "?"
            cells.append(f"`{commit[:7]}`" + (" (dirty)" if rec["measured_at"].get("dirty") else ""))
            lines.append("| " + " | ".join(cells) + " |")
        videos = sorted({v for r in rows.values() for v in (r["figures"].get("videos") or {})})
        if videos:  # records measured before per-video figures were kept have none
            lines += ["", "Per video: mIoU, mean over the mask seeds (Δ against `main_task_only`).", "",
                      "| video | " + " | ".join(f"`{n}`" for n in rows) + " |", "|" + "---|" * (len(rows) + 1)]
            for video in videos:
                cells = [video]
                for rec in rows.values():
                    v = (rec["figures"].get("videos") or {}).get(video)
                    cells.append("–" if v is None else f"{_fmt(v.get('miou'), 1, False)} ({_fmt(v.get('miou_vs_main'))})")
                lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"{flag} {item!r}: expected NAME=PATH, e.g. {flag} A=data/synth")
        out[key] = value
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--domain", action="append", default=[], metavar="NAME=DATA_ROOT",
                    help="a domain to (re)measure and its data root (generated there when missing)")
    ap.add_argument("--model-dir", action="append", default=[], metavar="NAME=DIR",
                    help="checkpoint for a domain (default: A the bundled model, B docs/benchmark/checkpoints/tiny-aerial)")
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--out-dir", type=Path, default=Path("runs/results"), help="job cache (resumable), per domain")
    ap.add_argument("--row", action="append", default=None, help=f"rows (default: {' '.join(ROWS)})")
    ap.add_argument("--family", action="append", default=None, help=f"families (default: {' '.join(FAMILIES)})")
    ap.add_argument("--seeds", type=int, default=SEEDS)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-frames", type=int, default=None, help="a smoke run: the first N frames of each video")
    ap.add_argument("--restamp-configs", action="store_true",
                    help="only re-resolve every record's config from the code (after a refactor proven "
                         "behaviour-preserving); figures and commits are kept")
    args = ap.parse_args(argv)
    results = load_results(args.results)

    if args.restamp_configs:
        if args.domain:
            raise SystemExit("--restamp-configs re-resolves configurations only; run it without --domain")
        changed = restamp_configs(results)
        write_results(results, args.results)
        print(f"{args.results}: configs re-resolved; changed: {', '.join(changed) or 'none'}")
        return 0
    if not args.domain:
        ap.error("name at least one --domain NAME=DATA_ROOT (or --restamp-configs)")

    data_roots, models = _pairs(args.domain, "--domain"), _pairs(args.model_dir, "--model-dir")
    rows = args.row or list(ROWS)
    families = args.family or list(FAMILIES)
    command = "python scripts/benchmark_results.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    measured_at = git_state()
    missing = [n for n in data_roots if DOMAINS.get(n, {}).get("needs_model_dir") and n not in models]
    if missing:
        raise SystemExit(f"--model-dir {missing[0]}=DIR is required: {missing[0]} is scored with a prepared model")
    for name, root in data_roots.items():
        model = models.get(name) or DOMAINS.get(name, {}).get("model")
        protocol = {"split": "test", "families": families, "seeds": args.seeds, "max_frames": args.max_frames,
                    "model": model or "model/bundled/tiny-synth"}
        model_dir = Path(models[name]).resolve() if name in models else (REPO / model if model else None)
        figures = run_domain(name, Path(root), model_dir, args.out_dir, rows, families, args.seeds, args.workers,
                             args.threads, args.max_frames)
        block = results["domains"].setdefault(name, {"description": DOMAINS.get(name, {}).get("description", name),
                                                     "rows": {}})
        for row, fig in figures.items():
            block["rows"][row] = make_record(row, fig, measured_at, command, protocol)
        block["rows"] = {r: block["rows"][r] for r in [*ROWS, *sorted(set(block["rows"]) - set(ROWS))]
                         if r in block["rows"]}
    write_results(results, args.results)
    print(f"{args.results} written ({', '.join(data_roots)}) at {measured_at['commit']}"
          + (" (uncommitted changes)" if measured_at["dirty"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
