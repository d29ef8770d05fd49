"""The camera-rate table: per row its schedule, costs, the share of frames delivered, steps taken and skipped, and
mIoU with its change against `main_task_only` replayed at the same fps (paired and pooled, as `report` counts)."""

from __future__ import annotations

from collections import defaultdict

from mask2former_ttt.evaluation.cost_model import CostModel
from mask2former_ttt.evaluation.report import _fmt, _row, delta_table, families_present
from mask2former_ttt.evaluation.video_eval import VideoScore


def camera_totals(scores: list[VideoScore]) -> dict[str, dict]:
    """Row -> {"schedule", "bench_row", "predict_s", "step_s", "frames", "delivered", "delivered_fraction",
    "unscored", "steps_taken", "steps_skipped", "runs"} summed over the row's camera-rate runs."""
    out: dict[str, dict] = defaultdict(lambda: {"frames": 0, "delivered": 0, "unscored": 0, "steps_taken": 0,
                                                "steps_skipped": 0, "runs": 0})
    for s in scores:
        if s.camera is None:
            continue
        row = out[s.row]
        for key in ("schedule", "bench_row", "predict_s", "step_s", "fps"):
            row[key] = s.camera[key]
        for key in ("frames", "delivered", "unscored", "steps_taken", "steps_skipped"):
            row[key] += s.camera[key]
        row["runs"] += 1
    for row in out.values():
        row["delivered_fraction"] = row["delivered"] / row["frames"] if row["frames"] else None
    return dict(out)


def camera_summary(summary: dict, scores: list[VideoScore], cost_model: CostModel, fps: float) -> dict:
    """`summary` (report.aggregate of camera-rate scores) with "camera": fps, the cost model (file, digest, the
    commit it was measured at, torch threads, each row's derivation) and `camera_totals`."""
    totals = camera_totals(scores)
    summary["camera"] = {
        "fps": fps, "cost_model": cost_model.path, "cost_model_digest": cost_model.digest,
        "measured_at": cost_model.measured_at, "threads": cost_model.threads,
        "costs": {row: cost_model.describe(t["bench_row"]) for row, t in totals.items()},
        "rows": totals,
    }
    return summary


def camera_table(summary: dict) -> str:
    """Markdown: where the costs come from, then one line per row, then the per-family Δ tables of `report`."""
    cam = summary["camera"]
    lines = [
        f"Camera at {cam['fps']:g} fps. Cost model: {cam['cost_model']} (digest {cam['cost_model_digest']}, measured "
        f"at commit {cam['measured_at']}, {cam['threads']} torch thread(s)):",
        "",
        *(f"- {row}: {text}" for row, text in cam["costs"].items()),
        "",
    ]
    head = ["method", "schedule", "P ms", "S ms", "delivered %", "steps taken", "steps skipped", "unscored frames",
            "drift+noise+fog mIoU", "Δ vs main (paired)", "Δ pooled vs main", "runs"]
    lines += [_row(head), _row(["---"] * len(head))]
    for name, m in summary["methods"].items():
        t = cam["rows"].get(name)
        if t is None:
            continue
        fraction = None if t["delivered_fraction"] is None else 100 * t["delivered_fraction"]
        lines.append(_row([
            name, t["schedule"], _fmt(1000 * t["predict_s"], 2), _fmt(1000 * t["step_s"], 2), _fmt(fraction),
            str(t["steps_taken"]), str(t["steps_skipped"]), str(t["unscored"]), _fmt(m["headline_miou"]),
            _fmt(m["headline_vs_main"], 2), _fmt(m["headline_pooled_vs_main"], 2), str(m["runs"]),
        ]))
    text = "\n".join(lines) + "\n\n"
    text += ("Every frame is scored: a delivered frame with its own prediction, a dropped one with the label map "
             "delivered last before it arrived; frames before the first delivery are not scored. Δ against "
             "main_task_only replayed at the same fps.\n\n")
    return text + delta_table(summary, families_present(summary))
