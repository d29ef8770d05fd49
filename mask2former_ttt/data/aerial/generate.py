"""Generate domain B (aerial): clean training stills + corrupted validation / test videos, in the same on-disk
layout as domain A, so ``StillDataset``, ``list_videos`` / ``VideoSequence``, ``m2f-ttt train`` and
``m2f-ttt evaluate`` read it unchanged.

* ``train``: ``n_train_stills`` clean stills from ``ceil(n_train_stills / stills_per_world)`` maps; still ``i``
  is centred near a random pixel of class ``i mod 8`` (every 8th still: anywhere), rotation 0-360 deg, scale
  jitter -- class-balanced, so the rare ``vehicle`` class is seen;
* ``val`` / ``test``: per world (``n_val_worlds`` / ``n_test_worlds``), one video per family in ``families``,
  all sharing the world's drone flight (paired with ``clean``), plus one ``return`` video in each of the first
  ``return_videos`` worlds (default 1: world 0).

Video names ``<split>-<family>-w<k>``; ``meta.json`` holds the :data:`~.classes.AERIAL` label set and a
``generator`` dict with ``"domain": "aerial"``. Output is byte-identical for the same arguments (any ``workers``).
"""

from __future__ import annotations

import logging
import math
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..seeding import derive_seed, rng_for
from ..writers import (
    prepare_dataset_root, write_coco_json, write_meta, write_still, write_video_frame, write_videos_manifest,
)
from .camera import STILL_SCALE, footprint_radius, random_still_pose, render
from .classes import AERIAL
from .corruptions import AERIAL_FAMILIES, CorruptionParams
from .program import RETURN, RETURN_SHIFT, AerialProgram
from .terrain import AerialMap, default_map_shape, geometry_scale, paint_map
from .video import AerialVideo, make_aerial_video_spec

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
DOMAIN = "aerial"


def class_anchors(world: AerialMap, size: tuple[int, int], stride: int = 2) -> list[np.ndarray]:
    """Per class, (N, 2) int arrays of map pixels (every ``stride``-th row / column) far enough from the border
    for a still of ``size`` at the largest still scale to be centred near them."""
    m = int(math.ceil(footprint_radius(size, STILL_SCALE[1])))
    h, w = world.shape
    sub = world.semantic[m : h - m : stride, m : w - m : stride]
    out = []
    for c in range(AERIAL.num_classes):
        ys, xs = np.nonzero(sub == c)
        out.append(np.stack([m + ys * stride, m + xs * stride], axis=1))
    return out


def _still_task(root: str, seed: int, world_idx: int, indices: list[int], size: tuple[int, int],
                map_shape: tuple[int, int]) -> tuple:
    world = paint_map(derive_seed(seed, "aerial-train-world", world_idx), map_shape, geometry_scale(size))
    anchors = class_anchors(world, size)
    images, anns = [], []
    for i in indices:
        rng = rng_for(seed, "aerial-train-still", i)
        c = i % (AERIAL.num_classes + 1)
        anchor = None
        if c < AERIAL.num_classes and len(anchors[c]):
            y, x = anchors[c][int(rng.integers(len(anchors[c])))]
            anchor = (float(y), float(x))
        f = render(world, random_still_pose(rng, world.shape, size, anchor), size)
        img, ann = write_still(root, "train", f"{i:06d}", f.image, f.semantic, f.instance, AERIAL, image_id=i + 1)
        images.append(img)
        anns.append(ann)
    return images, anns, len(indices)


def _video_task(root: str, seed: int, split: str, world_idx: int, families: list[str], n_frames: int,
                size: tuple[int, int], map_shape: tuple[int, int], program_kw: dict) -> tuple:
    world_seed = derive_seed(seed, f"aerial-{split}-world", world_idx)
    specs = [
        make_aerial_video_spec(f"{split}-{fam}-w{world_idx:02d}", split, fam, world_seed, n_frames, size, map_shape,
                               **program_kw)
        for fam in families
    ]
    base = AerialVideo(specs[0])
    clean = [base.clean_frame(t) for t in range(n_frames)]  # every family corrupts the same clean frames
    entries = {}
    for spec in specs:
        for t, f in enumerate(clean):
            write_video_frame(root, split, spec.name, t, spec.program.apply(f.image, t), f.semantic, f.instance)
        entries[spec.name] = spec.to_json()
    return entries, n_frames * len(specs)


def generate_aerial_dataset(
    root: str | Path,
    n_train_stills: int = 2000,
    stills_per_world: int = 25,
    n_val_worlds: int = 3,
    n_test_worlds: int = 3,
    families: tuple[str, ...] = AERIAL_FAMILIES,
    frames_per_video: int = 200,
    size: tuple[int, int] = (128, 160),
    seed: int = 0,
    workers: int = 1,
    overwrite: bool = False,
    progress: bool = True,
    return_videos: int = 1,
    ramp_end: float = 0.35,
    max_severity: float = 1.0,
    map_shape: tuple[int, int] | None = None,
    params: CorruptionParams | None = None,
) -> Path:
    """Write domain B under ``root`` and return it.

    Args:
        n_train_stills / stills_per_world: clean training stills and stills per training map (0 skips ``train``).
        n_val_worlds / n_test_worlds: maps per video split; each gets one video per family.
        families: corruption families (subset of :data:`~.corruptions.AERIAL_FAMILIES`; ``clean`` is the control).
        frames_per_video: video length (``return`` videos need at least 4).
        size: frame / still size ``(H, W)``; the map is :func:`~.terrain.default_map_shape` unless ``map_shape``.
        return_videos: number of worlds (from world 0) per video split that also get a ``return`` video.
        ramp_end / max_severity / params: severity schedule and strength (see :mod:`.program`, :mod:`.corruptions`).
        workers: processes (results are identical for any value).
        overwrite: delete previous generator outputs under ``root`` first (otherwise refuse).
    """
    root = prepare_dataset_root(root, overwrite)
    unknown = set(families) - set(AERIAL_FAMILIES)
    if unknown:
        raise ValueError(f"unknown aerial families {sorted(unknown)}; choose from {AERIAL_FAMILIES}")
    size = (int(size[0]), int(size[1]))
    shape = tuple(int(v) for v in map_shape) if map_shape is not None else default_map_shape(size)
    program_kw: dict = {"ramp_end": ramp_end, "max_severity": max_severity}
    if params is not None:
        program_kw["params"] = params
    if return_videos and (n_val_worlds or n_test_worlds):
        AerialProgram(RETURN, frames_per_video, 0)  # fail early if the videos are too short for a return program

    tasks: list[tuple] = []
    n_worlds = math.ceil(n_train_stills / stills_per_world) if n_train_stills else 0
    for k in range(n_worlds):
        idx = list(range(k * stills_per_world, min((k + 1) * stills_per_world, n_train_stills)))
        tasks.append((_still_task, str(root), seed, k, idx, size, shape))
    for split, n_w in (("val", n_val_worlds), ("test", n_test_worlds)):
        for k in range(n_w):
            fams = list(families) + ([RETURN] if k < return_videos else [])
            if fams:
                tasks.append((_video_task, str(root), seed, split, k, fams, frames_per_video, size, shape, program_kw))
    n_frames = sum(t[6] * len(t[5]) for t in tasks if t[0] is _video_task)
    log.info("generating %d aerial stills and %d video frames into %s", n_train_stills, n_frames, root)

    results: list[tuple] = [()] * len(tasks)
    with tqdm(total=n_train_stills + n_frames, desc="aerial", unit="img", disable=not progress) as bar:
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
    images: list[dict] = []
    anns: list[dict] = []
    videos: dict[str, dict] = {}
    for task, res in zip(tasks, results):
        if task[0] is _still_task:
            images += res[0]
            anns += res[1]
        else:
            videos.update(res[0])

    if n_train_stills:
        write_coco_json(root, "train", images, anns, AERIAL)
    write_videos_manifest(root, videos)
    write_meta(
        root,
        AERIAL,
        {
            "domain": DOMAIN,
            "format_version": FORMAT_VERSION,
            "seed": seed,
            "size": list(size),
            "map_shape": list(shape),
            "geometry_scale": geometry_scale(size),
            "n_train_stills": n_train_stills,
            "stills_per_world": stills_per_world,
            "n_val_worlds": n_val_worlds,
            "n_test_worlds": n_test_worlds,
            "families": list(families),
            "return_videos": return_videos,
            "return_shift": list(RETURN_SHIFT),
            "frames_per_video": frames_per_video,
            "ramp_end": ramp_end,
            "max_severity": max_severity,
            "corruption_params": asdict(params or CorruptionParams()),
        },
    )
    log.info("aerial dataset written to %s (%d stills, %d videos)", root, n_train_stills, len(videos))
    return root
