"""ID switches of per-frame ids vs `MaskTracker` ids on synthetic videos (instance ids there are track ids).

    .venv/bin/python scripts/tracking_eval.py --worlds 11 12 13 --frames 100 [--family clean] [--json out.json]

Runs the bundled model (main_only: tracking, not adaptation, is measured) on in-memory synthetic val videos,
keeps instances above the default score / area, and prints switches per 100 frames for both kinds of ids.
"""

from __future__ import annotations

import argparse
import json

import torch

from model.checkpoint import bundled_model_dir, load_checkpoint
from mask2former_ttt.data.video import SyntheticVideo, make_video_spec
from mask2former_ttt.tracking.evaluate import track_video
from mask2former_ttt.ttt import build_adapter


def evaluate_world(model, world: int, frames: int, family: str) -> dict:
    adapter = build_adapter(model, method="main_only", preset="default", seed=0)
    video = SyntheticVideo(make_video_spec(f"w{world}", "val", family, world_seed=world, n_frames=frames))
    return track_video(adapter, video)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worlds", type=int, nargs="+", default=[11, 12, 13])
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--family", default="clean")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = load_checkpoint(bundled_model_dir())
    rows = {}
    print(f"{'world':>5} | {'pairs':>5} | per-frame ids /100 f | tracked /100 f")
    for world in args.worlds:
        r = evaluate_world(model, world, args.frames, args.family)
        rows[str(world)] = r
        print(f"{world:>5} | {r['tracked']['pairs']:>5} | {r['per_frame_ids']['switches_per_100_frames']:>20.1f} | "
              f"{r['tracked']['switches_per_100_frames']:>14.1f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"family": args.family, "frames": args.frames, "worlds": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
