"""A long synthetic stream (default 5,000 frames) cycling through every shift with clean stretches between them,
rendered in memory (nothing written but the report), streamed through `main_only` and the guarded preset(s) on the
same frames: per-stretch mIoU against main_only, rollbacks, the guard's opening, and whether adaptation collapsed
(a clean stretch late in the stream far below main_only).

    .venv/bin/python scripts/long_stream.py --frames 5000 --preset default --json docs/benchmark/long_stream.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from statistics import mean

import torch

from model.checkpoint import bundled_model_dir, load_checkpoint
from mask2former_ttt.data.seeding import derive_seed
from mask2former_ttt.data.video import SyntheticVideo, make_video_spec
from mask2former_ttt.evaluation.compat import check_model_matches_data
from mask2former_ttt.evaluation.metrics import SemanticMeter
from mask2former_ttt.ttt import build_adapter
from mask2former_ttt.ttt.frame_step import step_frame

COLLAPSE_MIOU = 5.0  # a clean stretch this far below main_only counts as a collapse


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    model = load_checkpoint(args.model_dir)
    if args.data_root:  # the label set the model must share with the generator's worlds
        check_model_matches_data(args.model_dir, args.data_root, "test")
    world_seed = derive_seed(args.seed, "long-stream-world", 0)
    spec = make_video_spec("long-cycle", "test", "cycle", world_seed, args.frames, (128, 160), period=args.period)
    video = SyntheticVideo(spec)
    rows = ["main_only", *args.preset]
    adapters = {r: build_adapter(model, "main_only" if r == "main_only" else "online",
                                 "full" if r == "main_only" else r, seed=0) for r in rows}
    segments = spec.program.segments
    meters = {(r, i): SemanticMeter(model.cfg.num_classes) for r in rows for i in range(len(segments))}
    scale: dict[str, list[float]] = {r: [] for r in rows[1:]}
    t0 = time.perf_counter()
    for t in range(args.frames):
        f = video.frame(t)
        image = torch.from_numpy(f.image).permute(2, 0, 1).contiguous()
        target = torch.from_numpy(f.semantic.astype("int64"))
        seg = spec.program.segment_at(t)[0]
        for r, a in adapters.items():
            step = step_frame(a, image, "semantic", tuple(target.shape))
            meters[(r, seg)].update(step.result.label_map, target)
            if r != "main_only":
                scale[r].append(step.logits.stats.step_scale)
        if t % 250 == 249:
            print(f"frame {t + 1}/{args.frames} ({time.perf_counter() - t0:.0f} s)", flush=True)
    stretches = []
    for i, seg in enumerate(segments):
        a, b = seg.start, seg.stop
        row = {"family": seg.family, "frames": [a, b], "main_only": meters[("main_only", i)].compute()}
        for r in rows[1:]:
            row[r] = meters[(r, i)].compute()
            row[f"{r}_vs_main"] = row[r] - row["main_only"]
            row[f"{r}_mean_step_scale"] = mean(scale[r][a:b])
        stretches.append(row)
    summary = {}
    for r in rows[1:]:
        clean = [s[f"{r}_vs_main"] for s in stretches if s["family"] == "clean"]
        shifted = [s[f"{r}_vs_main"] for s in stretches if s["family"] != "clean"]
        summary[r] = {
            "clean_vs_main_mean": mean(clean), "clean_vs_main_worst": min(clean),
            "last_clean_vs_main": clean[-1], "shifted_vs_main_mean": mean(shifted),
            "rollbacks": adapters[r].rollbacks, "collapsed": min(clean) < -COLLAPSE_MIOU,
        }
    return {"frames": args.frames, "period": args.period, "model": str(args.model_dir), "threads": args.threads,
            "seconds": time.perf_counter() - t0, "summary": summary, "stretches": stretches}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=5000)
    ap.add_argument("--period", type=int, default=250, help="frames per clean / shifted stretch")
    ap.add_argument("--preset", action="append", default=None, help="guarded preset(s) to stream (default: default)")
    ap.add_argument("--model-dir", type=Path, default=bundled_model_dir())
    ap.add_argument("--data-root", type=Path, default=None, help="check the model's classes against this dataset")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    args.preset = args.preset or ["default"]
    result = run(args)
    for r, s in result["summary"].items():
        print(f"{r}: clean stretches {s['clean_vs_main_mean']:+.2f} mIoU vs main_only (worst {s['clean_vs_main_worst']:+.2f}, "
              f"last {s['last_clean_vs_main']:+.2f}), shifted {s['shifted_vs_main_mean']:+.2f}, rollbacks {s['rollbacks']}, "
              f"collapsed: {s['collapsed']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
