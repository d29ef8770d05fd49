"""The README's results table and cost table, generated from the measurements; never typed by hand.

    .venv/bin/python scripts/readme_tables.py            # print both tables
    .venv/bin/python scripts/readme_tables.py --write    # replace them in README.md between their markers
    .venv/bin/python scripts/readme_tables.py --check    # exit 1 when README.md's tables differ from the sources

Results: docs/benchmark/results.json (scripts/benchmark_results.py). Cost: docs/benchmark/bench_quick_cpu.json
(`m2f-ttt bench --quick --json ...`), with the commit it ran at and, when the configurations it timed differ from
what the presets resolve to today, the fields that differ. tests/test_readme_tables.py runs `--check`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

README = REPO / "README.md"
RESULTS = REPO / "docs" / "benchmark" / "results.json"
BENCH = REPO / "docs" / "benchmark" / "bench_quick_cpu.json"
LABELS = {"main_task_only": "`main_task_only` (mIoU)", "full_preset": "`full`", "default_preset": "`default`",
          "fast_preset": "`fast`", "online_k16": "`online_k16` (no guard)"}
HEADLINE = ("drift", "noise", "fog")
COST_ROWS = ("main_only", "fast", "default", "full", "online_k16", "release")


def _signed(v: float | None) -> str:
    if v is None:
        return "–"
    text = f"{v:+.2f}".replace("-", "−")
    return "0.00" if text in ("+0.00", "−0.00") else text


def _plain(v: float | None, digits: int = 1) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _short(commit: str | None) -> str:
    return f"`{commit[:7]}`" if commit else "an unrecorded commit"


README_DOMAINS = ("A", "B")  # the benchmark domains; the records of prepared models are in results.md and real-weights.md


def results_table(results: dict) -> str:
    domains = [d for d in results["domains"] if d in README_DOMAINS]
    head = ["row"] + [f"{d} {col}" for d in domains for col in ("drift+noise+fog", "clean", "after a return")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    rows = list(results["domains"][domains[0]]["rows"])
    for row in rows:
        cells = [LABELS.get(row, f"`{row}`")]
        for d in domains:
            rec = results["domains"][d]["rows"].get(row)
            if rec is None:
                cells += ["–"] * 3
                continue
            fig = rec["figures"]
            fams, final = fig["families"], fig.get("final_clean") or {}
            if row == "main_task_only":
                pooled = [fams[f].get("miou_pooled") for f in HEADLINE if f in fams]
                cells += [_plain(sum(pooled) / len(pooled) if pooled and None not in pooled else None),
                          _plain(fams.get("clean", {}).get("miou_pooled")), _plain(final.get("miou"))]
            else:
                cells += [f"**{_signed(fig.get('headline_pooled_vs_main'))}**",
                          _signed(fams.get("clean", {}).get("miou_pooled_vs_main")),
                          _signed(final.get("miou_vs_main"))]
        lines.append("| " + " | ".join(cells) + " |")
    by_commit: dict[str, list[str]] = {}
    for d in domains:
        for row, rec in results["domains"][d]["rows"].items():
            label = LABELS.get(row, row).split(" (")[0].strip("`")
            names = by_commit.setdefault(_short(rec["measured_at"].get("commit")), [])
            if label not in names:
                names.append(label)
    seeds = sorted({rec["protocol"]["seeds"] for d in domains for rec in results["domains"][d]["rows"].values()})
    measured = "; ".join(f"{', '.join(names)} at {commit}" for commit, names in by_commit.items())
    lines += ["", (f"Test videos, {'/'.join(map(str, seeds))} mask seeds. Δ mIoU against `main_task_only`, each "
              "family's videos pooled in one confusion matrix; \"after a return\": mean per-frame Δ over the clean "
              f"stretch that ends a drift-and-return video. Measured: {measured}. Generated from "
              "[results.json](docs/benchmark/results.json) by `scripts/readme_tables.py`.")]
    return "\n".join(lines)


def _flat(config: dict, prefix: str = "") -> dict:
    """Nested sub-configurations flattened to their leaf names (a field moved into a sub-model is the same knob;
    the boolean `pipelined` of configurations recorded before `schedule` is that field's value)."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(_flat(value, prefix))
        elif key == "pipelined":
            out["schedule"] = "pipelined" if value else "sync"
        else:
            out[key] = value
    return out


def config_drift(name: str, recorded: dict | None) -> list[str]:
    """Fields of bench row `name` whose value today differs from the one timed (a field the code no longer has is
    ignored; one the timed code lacked counts when it is switched on today)."""
    from mask2former_ttt.evaluation.bench import LIBRARY_ROWS
    from mask2former_ttt.evaluation.provenance import method_config

    row = next((r for r in LIBRARY_ROWS if r.name == name), None)
    if not recorded or "config" not in recorded or row is None:
        return []
    now = _flat(method_config(row.method, row.preset, row.overrides)["config"])
    then = _flat(recorded["config"])
    out = []
    for key, value in now.items():
        if (key in then and then[key] != value) or (key not in then and value not in (None, False, 0, 0.0)):
            out.append(key)
    return out


def cost_table(bench: dict) -> str:
    rows = bench["rows"]
    base = rows["main_only"]["s_per_frame"]
    lines = ["| row | ms / frame | × `main_only` | TTT steps / frame |", "|---|---|---|---|"]
    for name in [r for r in COST_ROWS if r in rows] + sorted(set(rows) - set(COST_ROWS)):
        r = rows[name]
        lines.append(f"| `{name}` | {1000 * r['s_per_frame']:.1f} | {r['s_per_frame'] / base:.2f} | "
                     f"{r['steps_per_frame']:.2f} |")
    machine = bench.get("machine", {})
    configs = bench.get("configs", {})
    drift = {name: config_drift(name, configs.get(name)) for name in rows}
    drift = {k: v for k, v in drift.items() if v}
    note = (f"Mean seconds per frame, rows interleaved on the same frames (`m2f-ttt bench --quick`: bundled tiny "
            f"model, 128×160, {machine.get('threads', '?')} torch thread, {machine.get('cpu', '?')} "
            f"{machine.get('device', '')}), measured at {_short(bench.get('measured_at', {}).get('commit'))}")
    if not configs:
        note += "; the configurations it timed were not recorded."
    elif drift:
        note += ("; **these are not today's configurations**, which differ at least in the fields " +
                 "; ".join(f"`{k}`: {', '.join(v)}" for k, v in drift.items()) +
                 " (to refresh: `m2f-ttt bench --quick --json docs/benchmark/bench_quick_cpu.json`, then this script).")
    else:
        note += ", with the configurations the presets resolve to today."
    server = bench.get("server", {})
    if server:
        parts = [f"{v['streams']} stream{'s' if v['streams'] > 1 else ''} {v['fps']:.1f} fps"
                 for v in server.values()]
        bare = next(iter(server.values())).get("bare_fps")
        note += (f" Served (`m2f-ttt serve` over WebSocket, `default`, default worker lanes): {', '.join(parts)}"
                 + (f", against {bare:.1f} fps for the bare library loop." if bare else "."))
    note += " Source: [bench_quick_cpu.json](docs/benchmark/bench_quick_cpu.json), via `scripts/readme_tables.py`."
    return "\n".join(lines + ["", note])


def tables() -> dict[str, str]:
    return {"results-table": results_table(json.loads(RESULTS.read_text())),
            "cost-table": cost_table(json.loads(BENCH.read_text()))}


def replace_between_markers(text: str, name: str, body: str) -> str:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if text.count(start) != 1 or text.count(end) != 1:
        raise ValueError(f"README.md must hold exactly one {start} ... {end} pair")
    head, rest = text.split(start)
    _, tail = rest.split(end)
    return f"{head}{start}\n{body}\n{end}{tail}"


def render_readme(text: str) -> str:
    for name, body in tables().items():
        text = replace_between_markers(text, name, body)
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="replace the tables in README.md")
    mode.add_argument("--check", action="store_true", help="exit 1 when README.md's tables are not the generated ones")
    args = ap.parse_args(argv)
    text = README.read_text()
    if args.write:
        README.write_text(render_readme(text))
        print("README.md tables regenerated")
    elif args.check:
        if render_readme(text) != text:
            print("README.md's tables differ from docs/benchmark: run scripts/readme_tables.py --write")
            return 1
        print("README.md's tables are up to date")
    else:
        for name, body in tables().items():
            print(f"<!-- {name} -->\n{body}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
