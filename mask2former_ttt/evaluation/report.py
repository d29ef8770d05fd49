"""Aggregate per-video scores into the comparison table: JSON, Markdown and per-video curve plots."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from statistics import mean, median

from mask2former_ttt.evaluation.metrics import pooled_miou
from mask2former_ttt.evaluation.video_eval import VideoScore

SHIFT_FAMILIES = ("drift", "noise", "fog", "contrast", "blur", "jpeg", "cast", "segments", "return", "cycle", "clean")
HEADLINE = ("drift", "noise", "fog")


def _avg(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return mean(vals) if vals else None


def final_clean_segment(frame_family: list[str]) -> tuple[int, int] | None:
    """(start, stop) of the clean frames that end a video after a shifted stretch (None if it does not end so)."""
    stop = len(frame_family)
    start = stop
    while start > 0 and frame_family[start - 1] == "clean":
        start -= 1
    return (start, stop) if 0 < start < stop else None


def aggregate(scores: list[VideoScore], family_of: dict[str, str], row_order: list[str],
              final_clean: dict[str, tuple[int, int]] | None = None) -> dict:
    """{"methods": {row: {"families": {family: {"miou", "pq", "ap", "miou_vs_main", "videos", "runs"}}, "s_per_frame",
    "ratio_to_main", "headline_miou", "headline_vs_main"}}, "safe_adaptation": {...}}.

    `final_clean` (video -> frame range, e.g. the return videos' last clean segment) adds "final_clean": {"miou",
    "miou_vs_main", "miou_pooled_vs_main", "videos", "runs"}: the mean per-frame mIoU over those frames, paired
    against Main (forgetting), and the same frames scored from one confusion matrix (`_segment_pooled_vs_main`).
    `miou_vs_main` is paired: the mean over the row's runs of (run mIoU − Main Task Only's mIoU on the same video),
    so a row that covers fewer videos than Main is still compared like for like. `headline_miou` (drift, noise,
    fog) is None unless the row covers all three families.
    """
    by: dict[str, dict[str, list[VideoScore]]] = defaultdict(lambda: defaultdict(list))
    for s in scores:
        by[s.row][family_of[s.video]].append(s)
    main_of = {s.video: s.miou for s in scores if s.row == "main_task_only" and s.seed == 0}
    main_scores = {s.video: s for s in scores if s.row == "main_task_only" and s.seed == 0}

    def vs_main(ss: list[VideoScore]) -> float | None:
        return _avg([s.miou - main_of[s.video] for s in ss if s.video in main_of])

    def pooled(ss: list[VideoScore]) -> float | None:
        return pooled_miou([s.confusion for s in ss if s.confusion is not None])

    def pooled_vs_main(ss: list[VideoScore]) -> float | None:
        """pooled(runs) − pooled(Main on the same videos), over the runs that have a Main run and a confusion."""
        paired = [s for s in ss if s.video in main_scores and s.confusion and main_scores[s.video].confusion]
        row, main = pooled(paired), pooled([main_scores[s.video] for s in paired])
        return None if row is None or main is None else row - main

    methods: dict[str, dict] = {}
    for row in row_order:
        fams = {
            fam: {
                "miou": _avg([s.miou for s in ss]),
                "pq": _avg([s.pq for s in ss]),
                "ap": _avg([s.ap for s in ss]),
                "miou_vs_main": vs_main(ss),
                "miou_pooled": pooled(ss),
                "miou_pooled_vs_main": pooled_vs_main(ss),
                "videos": len({s.video for s in ss}),
                "runs": len(ss),
            }
            for fam, ss in sorted(by[row].items())
        }
        all_scores = [s for ss in by[row].values() for s in ss]
        per_video: dict[str, list[VideoScore]] = defaultdict(list)
        for sc in all_scores:
            per_video[sc.video].append(sc)
        covered = all(f in fams for f in HEADLINE)
        methods[row] = {
            "families": fams,
            # median over the row's runs of each run's mean seconds per frame: robust to contention on shared cores
            "s_per_frame": median([s.s_per_frame for s in all_scores]) if all_scores else None,
            "headline_miou": _avg([fams[f]["miou"] for f in HEADLINE]) if covered else None,
            "headline_vs_main": _avg([fams[f]["miou_vs_main"] for f in HEADLINE]) if covered else None,
            "headline_pooled_vs_main": _avg([fams[f]["miou_pooled_vs_main"] for f in HEADLINE]) if covered else None,
            "videos": {
                video: {"family": family_of[video], "miou": _avg([x.miou for x in ss]), "miou_vs_main": vs_main(ss),
                        "runs": len(ss)}
                for video, ss in sorted(per_video.items())
            },
            "final_clean": _final_clean(all_scores, final_clean, main_scores) if final_clean else None,
            "rollbacks": sum(s.rollbacks for s in all_scores),
            "runs": len(all_scores),
        }
    base = methods.get("main_task_only", {}).get("s_per_frame")
    for m in methods.values():
        m["ratio_to_main"] = m["s_per_frame"] / base if base and m["s_per_frame"] else None
    summary = {"methods": methods}
    summary["safe_adaptation"] = safe_adaptation(summary)
    return summary


def _final_clean(row_scores: list[VideoScore], ranges: dict[str, tuple[int, int]],
                 main: dict[str, VideoScore]) -> dict | None:
    def seg(s: VideoScore) -> float:
        a, b = ranges[s.video]
        return mean(s.per_frame_miou[a:b])

    ss = [s for s in row_scores if s.video in ranges and s.per_frame_miou]
    if not ss:
        return None
    return {"miou": _avg([seg(s) for s in ss]),
            "miou_vs_main": _avg([seg(s) - seg(main[s.video]) for s in ss if s.video in main]),
            "miou_pooled_vs_main": _segment_pooled_vs_main(ss, ranges, main),
            "videos": len({s.video for s in ss}), "runs": len(ss)}


def _segment_pooled_vs_main(ss: list[VideoScore], ranges: dict[str, tuple[int, int]],
                            main: dict[str, VideoScore]) -> float | None:
    """The final clean segment, dataset-style: mIoU of the confusion matrix summed over the runs' segment frames minus
    Main's over the same videos. Pixels count once over the segment instead of per frame; a class predicted but absent
    from the segment's labels scores IoU 0 over the whole pool (1/K of it, as detectron2's SemSegEvaluator counts).
    None unless every run and its Main run scored this segment."""

    def scored(s: VideoScore) -> bool:
        return s.segment_confusion is not None and s.segment == list(ranges[s.video])

    if not all(scored(s) and s.video in main and scored(main[s.video]) for s in ss):
        return None
    row = pooled_miou([s.segment_confusion for s in ss])  # type: ignore[misc]
    ref = pooled_miou([main[s.video].segment_confusion for s in ss])  # type: ignore[misc]
    return None if row is None or ref is None else row - ref


def safe_adaptation(summary: dict, guarded: str = "full_preset", unguarded: str = "online_k16") -> dict | None:
    """The guard's effect from one run: clean mIoU change and drift/noise/fog gain against Main Task Only, with and
    without the guard, and the share of the unguarded gain the guarded row keeps."""
    methods = summary["methods"]
    if not {"main_task_only", guarded, unguarded} <= set(methods):
        return None

    def delta(row: str, fam: str) -> float | None:
        return methods[row]["families"].get(fam, {}).get("miou_vs_main")

    def gain(row: str) -> float | None:
        return methods[row]["headline_vs_main"]

    g, u = gain(guarded), gain(unguarded)
    return {
        "guarded": guarded,
        "unguarded": unguarded,
        "clean_delta": {guarded: delta(guarded, "clean"), unguarded: delta(unguarded, "clean")},
        "headline_gain": {guarded: g, unguarded: u},
        "gain_kept": g / u if g is not None and u else None,
    }


def _fmt(v: float | None, digits: int = 1) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def families_present(summary: dict) -> list[str]:
    """Every family any row covers: the synthetic families in their usual order, then any others by name."""
    present = {f for m in summary["methods"].values() for f in m["families"]}
    return [f for f in SHIFT_FAMILIES if f in present] + sorted(present - set(SHIFT_FAMILIES))


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def markdown_table(summary: dict) -> str:
    """Rows = methods; columns = mIoU per family (PQ / AP in parentheses where defined), s/frame, ratio; then the
    paired Δ per family and the mIoU of every video."""
    fams = families_present(summary)
    head = ["method", *fams, "drift+noise+fog mIoU", "Δ vs main (paired)", "s/frame", "× main", "runs"]
    lines = [_row(head), _row(["---"] * len(head))]
    for name, m in summary["methods"].items():
        cells = []
        for f in fams:
            d = m["families"].get(f)
            cells.append("–" if d is None else f"{_fmt(d['miou'])} ({_fmt(d['pq'])} / {_fmt(d['ap'])})")
        lines.append(
            f"| {name} | " + " | ".join(cells) + f" | {_fmt(m['headline_miou'])} | {_fmt(m['headline_vs_main'], 2)} "
            f"| {_fmt(m['s_per_frame'], 3)} | {_fmt(m['ratio_to_main'], 2)} | {m['runs']} |"
        )
    text = "\n".join(lines) + "\n\nCells: mIoU (PQ / AP). AP is mask AP@[.5:.95] on thing classes. runs = video × seed runs behind the row.\n"
    text += "\n" + delta_table(summary, fams) + "\n" + video_table(summary)
    finals = {n: m["final_clean"] for n, m in summary["methods"].items() if m.get("final_clean")}
    if finals:
        text += "\nFinal clean segment of the return videos (forgetting; mean per-frame mIoU, Δ vs main paired; " \
            "pooled Δ from one confusion matrix over the segment's frames): " + \
            "; ".join(f"{n} {_fmt(f['miou'])} ({_fmt(f['miou_vs_main'], 2)}; pooled {_fmt(f.get('miou_pooled_vs_main'), 2)})"
                      for n, f in finals.items()) + ".\n"
    safe = summary.get("safe_adaptation")
    if safe:
        g, u = safe["guarded"], safe["unguarded"]
        text += (
            f"\nSafe adaptation ({g} vs {u}, against main_task_only): clean {_fmt(safe['clean_delta'][g], 2)} vs "
            f"{_fmt(safe['clean_delta'][u], 2)} mIoU; drift+noise+fog gain {_fmt(safe['headline_gain'][g], 2)} vs "
            f"{_fmt(safe['headline_gain'][u], 2)} ({_fmt(None if safe['gain_kept'] is None else 100 * safe['gain_kept'], 0)} % kept).\n"
        )
    return text


def video_table(summary: dict) -> str:
    """mIoU of every row on every video (mean over its seeds), videos as rows."""
    rows = list(summary["methods"])
    videos = sorted({v for m in summary["methods"].values() for v in m.get("videos", {})})
    lines = [_row(["video", "family", *rows]), _row(["---"] * (len(rows) + 2))]
    for video in videos:
        cells = [summary["methods"][r].get("videos", {}).get(video) for r in rows]
        family = next(c["family"] for c in cells if c)
        lines.append(_row([video, family, *("–" if c is None else _fmt(c["miou"]) for c in cells)]))
    return "mIoU per video:\n\n" + "\n".join(lines) + "\n"


def delta_table(summary: dict, fams: list[str]) -> str:
    """mIoU change against Main Task Only on the same videos (paired), per family, with each family's run count."""
    lines = [_row(["method", *fams]), _row(["---"] * (len(fams) + 1))]
    for name, m in summary["methods"].items():
        if name == "main_task_only":
            continue
        cells = []
        for f in fams:
            d = m["families"].get(f)
            cells.append("–" if d is None or d["miou_vs_main"] is None else f"{d['miou_vs_main']:+.1f} ({d['runs']})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    out = "Δ mIoU against main_task_only on the same videos (runs):\n\n" + "\n".join(lines) + "\n"
    return out + "\n" + pooled_delta_table(summary, fams)


def pooled_delta_table(summary: dict, fams: list[str]) -> str:
    """The same comparison on the family's pooled mIoU (one confusion matrix summed over its videos)."""
    lines = [_row(["method", *fams]), _row(["---"] * (len(fams) + 1))]
    for name, m in summary["methods"].items():
        if name == "main_task_only":
            continue
        cells = [_fmt((m["families"].get(f) or {}).get("miou_pooled_vs_main"), 2) for f in fams]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return ("Δ pooled mIoU against main_task_only (each family's videos in one confusion matrix, as a dataset "
            "evaluator counts; per-video mIoU counts a class a video lacks at IoU 0 once a few pixels predict it):"
            "\n\n" + "\n".join(lines) + "\n")


def plot_curves(scores: list[VideoScore], out_dir: Path, rows: list[str]) -> list[Path]:
    """One PNG per video: per-frame mIoU of each row (seed 0), smoothed over 9 frames."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for video in sorted({s.video for s in scores}):
        fig, ax = plt.subplots(figsize=(7, 3.2))
        for row in rows:
            match = [s for s in scores if s.video == video and s.row == row and s.seed == 0]
            if match:
                y = np.convolve(match[0].per_frame_miou, np.ones(9) / 9, mode="valid")
                ax.plot(y, label=row, lw=1.2)
        ax.set_xlabel("frame")
        ax.set_ylabel("mIoU (9-frame mean)")
        ax.set_title(video)
        ax.legend(fontsize=6, ncol=2)
        fig.tight_layout()
        path = out_dir / f"{video}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(path)
    return paths


RECORDS_SCHEMA = "m2f-ttt benchmark records v1"  # docs/benchmark/results.json, written by scripts/benchmark_results.py


def write_report(summary: dict, out_dir: Path) -> None:
    """results.json and results.md of one run in `out_dir`; refuses to overwrite the benchmark records."""
    existing = out_dir / "results.json"
    if existing.is_file():
        try:
            is_records = json.loads(existing.read_text()).get("schema") == RECORDS_SCHEMA
        except (ValueError, AttributeError):
            is_records = False
        if is_records:
            raise ValueError(f"{existing} holds the benchmark records; regenerate them with "
                             "scripts/benchmark_results.py instead of writing one run's report over them")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(summary, indent=2))
    (out_dir / "results.md").write_text(markdown_table(summary))
