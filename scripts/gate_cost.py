"""What the confidence gate costs: per-frame time of a preset (`--preset`, `default` unless given) with and without
`confidence_gate`, and of `main_only`, on whole videos streamed in order (adaptation + prediction + semantic
post-processing).

Variants run interleaved video by video and repeat; the report gives each variant's median s/frame per video and
its ratio to `main_only` measured in the same run. A clean video from its first frame is the stream that never
steps (the gate reuses the frame's own prediction); a drift-and-return video ends in a clean stretch with adapted
weights, where the gate pays one forward of θ0 per frame (that forward is the frame's
prediction on frames the gate finds typical).

    .venv/bin/python scripts/gate_cost.py --data-root /work/data/synth --split val \
        --video val-clean-w00 --video val-return-w00 --repeats 3 --threads 1 [--preset full] \
        [--with feature_align=0.0] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from model.checkpoint import bundled_model_dir, load_checkpoint
from mask2former_ttt.evaluation.benchmark import load_video
from mask2former_ttt.evaluation.protocol import parse_guard_overrides
from mask2former_ttt.ttt import build_adapter
from mask2former_ttt.ttt.frame_step import step_frame


def variants(preset: str, extra: list[str] | None = None) -> dict[str, tuple[str, dict]]:
    """Name -> (method, overrides of `preset`) of the timed variants; each of `extra` ("FIELD=VALUE", a guard
    field as `evaluate --guard` takes it) adds `preset` with that one change."""
    out = {"main_only": ("main_only", {}), preset: ("online", {}),
           f"{preset}_without_confidence_gate": ("online", {"confidence_gate": None})}
    for item in extra or []:
        out[f"{preset}_with_{item}"] = ("online", parse_guard_overrides([item]))
    return out


def time_video(model, frames, method: str, preset: str, overrides: dict) -> tuple[float, int]:
    """Seconds per frame over the whole video, and on how many frames the confidence gate scored the frame."""
    adapter = build_adapter(model, method, preset, seed=0, **overrides)
    scored = 0
    t0 = time.perf_counter()
    for f in frames:
        step = step_frame(adapter, f.image, "semantic", tuple(f.semantic.shape))
        scored += step.stats.confidence_score is not None
    return (time.perf_counter() - t0) / len(frames), scored


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", type=Path, default=None, help="default: the bundled model")
    ap.add_argument("--data-root", type=Path, required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--video", action="append", required=True)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--preset", default="default", help="the adapting preset timed with and without the gate")
    ap.add_argument("--with", dest="extra", action="append", default=[], metavar="FIELD=VALUE",
                    help="also time the preset with this guard field changed (repeatable), e.g. feature_align=0.0")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    timed = variants(a.preset, a.extra)
    torch.set_num_threads(a.threads)
    model = load_checkpoint(a.model_dir or bundled_model_dir()).eval()
    report = {"preset": a.preset, "threads": a.threads, "repeats": a.repeats, "videos": {}}
    for video in a.video:
        frames = load_video(a.data_root, a.split, video)
        times: dict[str, list[float]] = {v: [] for v in timed}
        scored: dict[str, int] = {}
        for _ in range(a.repeats):
            for name, (method, overrides) in timed.items():
                s, scored[name] = time_video(model, frames, method, a.preset, overrides)
                times[name].append(s)
        med = {v: statistics.median(t) for v, t in times.items()}
        row = {v: {"s_per_frame": round(med[v], 5), "x_main_only": round(med[v] / med["main_only"], 3),
                   "frames_confidence_scored": scored[v]} for v in timed}
        report["videos"][video] = {"frames": len(frames), **row}
        print(video, json.dumps(row), flush=True)
    if a.json:
        a.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
