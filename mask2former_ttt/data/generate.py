"""Generate the synthetic benchmark: clean training stills + shifted validation / test videos.

Splits (all worlds have distinct seeds derived from ``seed``):

* ``train``: ``n_train_stills`` clean stills (COCO-panoptic + semantic layout) from
  ``ceil(n_train_stills / stills_per_world)`` training worlds, random camera poses;
* ``val``: for each of ``n_val_worlds`` worlds, one video per family in ``families`` (+ one
  ``segments`` video in the first world) -- for tuning only;
* ``test``: the same for ``n_test_worlds`` worlds (default 3). Within a world every family uses the
  same camera path, so videos differ only by the shift (paired comparison against ``clean``).

Video names are ``<split>-<family>-w<k>`` (e.g. ``test-fog-w02``). Output is byte-identical for the
same arguments (``workers`` does not change the result).

CLI: ``python -m mask2former_ttt.data data/synth --train-stills 2000 --frames 200``.
"""

from __future__ import annotations

import argparse
import logging
import math
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path

from tqdm.auto import tqdm

from .camera import random_pose
from .classes import SYNTHETIC
from .seeding import derive_seed, rng_for
from .shifts import FAMILIES, RETURN, SEGMENTS, ShiftParams
from .video import SyntheticVideo, make_video_spec
from .world import World
from .writers import (
    prepare_dataset_root, write_coco_json, write_meta, write_still, write_video_frame, write_videos_manifest,
)

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
STILL_WORLD_WIDTH = 1536


def _still_task(root: str, seed: int, world_idx: int, indices: list[int], size: tuple[int, int], height: int) -> tuple:
    world = World.generate(derive_seed(seed, "train-world", world_idx), STILL_WORLD_WIDTH, height)
    images, anns = [], []
    for i in indices:
        pose = random_pose(world.width, world.height, size, rng_for(seed, "train-still", i))
        f = world.render(pose, size)
        img, ann = write_still(root, "train", f"{i:06d}", f.image, f.semantic, f.instance, SYNTHETIC, image_id=i + 1)
        images.append(img)
        anns.append(ann)
    return images, anns, len(indices)


def _video_task(
    root: str, seed: int, split: str, world_idx: int, families: list[str], n_frames: int, size: tuple[int, int],
    height: int, program_kw: dict,
) -> tuple:
    world_seed = derive_seed(seed, f"{split}-world", world_idx)
    world = None
    entries = {}
    for fam in families:
        name = f"{split}-{fam}-w{world_idx:02d}"
        spec = make_video_spec(name, split, fam, world_seed, n_frames, size, world_height=height, **program_kw)
        if world is None:
            world = World.generate(world_seed, SyntheticVideo.world_width(spec), height)
        video = SyntheticVideo(spec, world)
        for t, f in enumerate(video):
            write_video_frame(root, split, name, t, f.image, f.semantic, f.instance)
        entries[name] = spec.to_json()
    return entries, n_frames * len(families)


def generate_dataset(
    root: str | Path,
    n_train_stills: int = 2000,
    stills_per_world: int = 25,
    n_val_worlds: int = 3,
    n_test_worlds: int = 3,
    families: tuple[str, ...] = FAMILIES,
    segments_videos: bool = True,
    return_videos: bool = True,
    frames_per_video: int = 200,
    val_frames: int | None = None,
    size: tuple[int, int] = (128, 160),
    world_height: int = 256,
    seed: int = 0,
    ramp_frac: float = 0.4,
    max_severity: float = 1.0,
    shift_params: ShiftParams | None = None,
    workers: int = 1,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Write the dataset under ``root`` and return it.

    Args:
        n_train_stills: number of clean training stills (``train`` split); 0 skips it.
        stills_per_world: stills rendered from each training world.
        n_val_worlds / n_test_worlds: worlds per video split; each gets one video per family.
        families: shift families (subset of ``shifts.FAMILIES``; ``clean`` is the control).
        segments_videos: also write one ``segments`` video (family changes partway) in world 0 of val/test.
        return_videos: also write one ``return`` video (clean -> drift excursion -> clean) in every val/test world.
        frames_per_video / val_frames: video lengths (val defaults to ``frames_per_video``).
        size: frame / still size ``(H, W)``.
        world_height: world rows (geometry scales with it; 256 suits 96-256 px frames).
        ramp_frac / max_severity / shift_params: severity schedule and strength (see :mod:`.shifts`).
        workers: processes (results are identical for any value).
        overwrite: delete previous generator outputs under ``root`` first (otherwise refuse).
    """
    root = prepare_dataset_root(root, overwrite)
    unknown = set(families) - set(FAMILIES)
    if unknown:
        raise ValueError(f"unknown families {sorted(unknown)}")
    size = (int(size[0]), int(size[1]))
    program_kw: dict = {"ramp_frac": ramp_frac, "max_severity": max_severity}
    if shift_params is not None:
        program_kw["params"] = shift_params

    tasks: list[tuple] = []
    n_worlds = math.ceil(n_train_stills / stills_per_world) if n_train_stills else 0
    for k in range(n_worlds):
        idx = list(range(k * stills_per_world, min((k + 1) * stills_per_world, n_train_stills)))
        tasks.append((_still_task, str(root), seed, k, idx, size, world_height))
    video_splits = (("val", n_val_worlds, val_frames or frames_per_video), ("test", n_test_worlds, frames_per_video))
    for split, n_w, n_f in video_splits:
        for k in range(n_w):
            fams = list(families) + ([SEGMENTS] if segments_videos and k == 0 else []) + ([RETURN] if return_videos else [])
            tasks.append((_video_task, str(root), seed, split, k, fams, n_f, size, world_height, program_kw))
    total = n_train_stills + sum(t[6] * len(t[5]) for t in tasks if t[0] is _video_task)
    log.info("generating %d stills and %d video frames into %s", n_train_stills, total - n_train_stills, root)

    images: list[dict] = []
    anns: list[dict] = []
    videos: dict[str, dict] = {}
    results: list[tuple] = [()] * len(tasks)
    with tqdm(total=total, desc="synth", unit="img", disable=not progress) as bar:
        if workers > 1:
            with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as ex:
                futures = {ex.submit(fn, *args): k for k, (fn, *args) in enumerate(tasks)}
                for fut in as_completed(futures):
                    results[futures[fut]] = fut.result()
                    bar.update(results[futures[fut]][-1])
        else:
            for k, (fn, *args) in enumerate(tasks):
                results[k] = fn(*args)
                bar.update(results[k][-1])
    for task, res in zip(tasks, results):
        if task[0] is _still_task:
            images += res[0]
            anns += res[1]
        else:
            videos.update(res[0])

    if n_train_stills:
        write_coco_json(root, "train", images, anns, SYNTHETIC)
    write_videos_manifest(root, videos)
    write_meta(
        root,
        SYNTHETIC,
        {
            "format_version": FORMAT_VERSION,
            "seed": seed,
            "size": list(size),
            "world_height": world_height,
            "n_train_stills": n_train_stills,
            "stills_per_world": stills_per_world,
            "n_val_worlds": n_val_worlds,
            "n_test_worlds": n_test_worlds,
            "families": list(families),
            "segments_videos": segments_videos,
            "return_videos": return_videos,
            "frames_per_video": frames_per_video,
            "val_frames": val_frames or frames_per_video,
            "ramp_frac": ramp_frac,
            "max_severity": max_severity,
            "shift_params": asdict(shift_params or ShiftParams()),
        },
    )
    log.info("dataset written to %s (%d stills, %d videos)", root, n_train_stills, len(videos))
    return root


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root")
    ap.add_argument("--train-stills", type=int, default=2000)
    ap.add_argument("--stills-per-world", type=int, default=25)
    ap.add_argument("--val-worlds", type=int, default=3)
    ap.add_argument("--test-worlds", type=int, default=3)
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--no-segments", action="store_true")
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--val-frames", type=int, default=None)
    ap.add_argument("--size", type=int, nargs=2, default=(128, 160), metavar=("H", "W"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ramp-frac", type=float, default=0.4)
    ap.add_argument("--max-severity", type=float, default=1.0)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--overwrite", action="store_true")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    generate_dataset(
        a.root, n_train_stills=a.train_stills, stills_per_world=a.stills_per_world, n_val_worlds=a.val_worlds,
        n_test_worlds=a.test_worlds, families=tuple(f for f in a.families.split(",") if f),
        segments_videos=not a.no_segments, frames_per_video=a.frames, val_frames=a.val_frames, size=tuple(a.size),
        seed=a.seed, ramp_frac=a.ramp_frac, max_severity=a.max_severity, workers=a.workers, overwrite=a.overwrite,
    )


if __name__ == "__main__":
    main()
