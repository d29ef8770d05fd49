"""Methods × videos × seeds -> per-video scores (cached, resumable), aggregated per shift family.

Jobs run in `workers` processes (one torch thread each); every finished (video, row, seed) is written to
`out_dir/jobs/` at once so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from tqdm import tqdm

from model.checkpoint import load_checkpoint
from mask2former_ttt.data.readers import VideoSequence, list_videos
from mask2former_ttt.evaluation.protocol import HEADLINE_ROWS, Row
from mask2former_ttt.evaluation.video_eval import LabelledFrame, VideoScore, evaluate_video
from mask2former_ttt.ttt.config import ttt_preset

if TYPE_CHECKING:
    from mask2former_ttt.evaluation.camera_eval import CameraSpec

log = logging.getLogger(__name__)
_MODEL = None


def load_video(root: Path, split: str, name: str, max_frames: int | None = None) -> list[LabelledFrame]:
    """Frames of one video of a KITTI-STEP-layout tree as LabelledFrames."""
    seq = VideoSequence(root, split, name)
    n = len(seq) if max_frames is None else min(len(seq), max_frames)
    return [LabelledFrame(s["image"], s["semantic"], s["instance"]) for s in (seq[t] for t in range(n))]


def read_manifest(root: Path, split: str) -> dict[str, str | None]:
    """Video name -> shift family for `split` (family None for real datasets without a `videos.json`)."""
    return {v.name: v.family for v in list_videos(root, split)}


def final_clean_ranges(root: Path, split: str, videos: dict[str, str],
                       max_frames: int | None = None) -> dict[str, tuple[int, int]]:
    """Video -> (start, stop) of its final clean segment, for the `return` videos among `videos` (forgetting).
    With `max_frames`, of the frames that are scored: a video cut before its clean ending has none."""
    from mask2former_ttt.evaluation.report import final_clean_segment

    out = {}
    for seq in list_videos(root, split):
        if seq.name in videos and seq.family == "return" and "frame_family" in seq.info:
            rng = final_clean_segment(seq.info["frame_family"][:max_frames])
            if rng is not None:
                out[seq.name] = rng
    return out


def _init_worker(model_dir: str, threads: int) -> None:
    global _MODEL
    torch.set_num_threads(threads)
    _MODEL = load_checkpoint(model_dir)


def _run_job(root: str, split: str, video: str, row: dict, seed: int, max_frames: int | None,
             segment: tuple[int, int] | None = None, camera: CameraSpec | None = None) -> dict:
    frames = load_video(Path(root), split, video, max_frames)
    parsed = Row.model_validate(row)
    if camera is not None:
        from mask2former_ttt.evaluation.camera_eval import evaluate_at_camera_rate

        return asdict(evaluate_at_camera_rate(_MODEL, frames, parsed, seed, video, camera, segment))
    score = evaluate_video(_MODEL, frames, parsed, seed, video, parsed.panoptic_metrics, parsed.panoptic_metrics, segment)
    return asdict(score)


def limit_videos(videos: list[str], families: dict[str, str] | None, per_family: int | None) -> list[str]:
    """The first `per_family` videos (in name order) of each family, or all of them."""
    if per_family is None or families is None:
        return videos
    kept: dict[str, int] = {}
    out = []
    for v in sorted(videos):
        fam = families.get(v, "")
        if kept.get(fam, 0) < per_family:
            out.append(v)
            kept[fam] = kept.get(fam, 0) + 1
    return out


def _world_index(video: str) -> int:
    match = re.search(r"-w(\d+)$", video)
    return int(match.group(1)) if match else 0


def job_priority(video: str, row: Row, seed: int, row_names: list[str]) -> tuple:
    """Run order: the headline rows (`HEADLINE_ROWS`) with all their seeds, the release preset (by far the
    costliest: B = 32 samples per step) last among them; then every other row with seed 0; then the other seeds. Within a tier
    world by world (w00 of every family for every row, then w01 ...), so a run cut short has even coverage."""
    tier = 0 if row.name in HEADLINE_ROWS else (1 if seed == 0 else 2)
    return (tier, row.preset == "release", seed, _world_index(video), row_names.index(row.name), video)


def run_key(model_dir: Path, row: Row, max_frames: int | None, camera: CameraSpec | None = None) -> str:
    """Short digest of everything a cached score depends on besides (video, seed): the checkpoint's weights and
    config, the row's method and fully resolved TTT configuration, the frame limit, and for a camera-rate replay
    its fps, schedule and cost model digest. A changed preset, model or row definition therefore never reuses a
    stale score, and camera-rate scores never mix with unlimited-time ones."""
    digest = hashlib.sha1()
    for name in ("config.json", "model.safetensors"):
        path = Path(model_dir) / name
        if path.is_file():
            digest.update(path.read_bytes())
    resolved = ttt_preset(row.preset, **row.overrides).model_dump(mode="json")
    spec = {"row": row.model_dump(mode="json", exclude={"name", "alias_of"}), "ttt": resolved, "max_frames": max_frames}
    if camera is not None:
        spec["camera"] = camera.key(row)
    digest.update(json.dumps(spec, sort_keys=True).encode())
    return digest.hexdigest()[:10]


def job_path(out_dir: Path, video: str, row: str, seed: int, key: str) -> Path:
    return out_dir / "jobs" / f"{video}__{row}__s{seed}__{key}.json"


def run_benchmark(
    model_dir: Path,
    root: Path,
    split: str,
    videos: list[str],
    rows: list[Row],
    seeds: int,
    out_dir: Path,
    workers: int = 2,
    max_frames: int | None = None,
    families: dict[str, str] | None = None,
    run: bool = True,
    threads: int | None = None,
    segments: dict[str, tuple[int, int]] | None = None,
    camera: CameraSpec | None = None,
) -> list[VideoScore]:
    """Run every (video, row, seed) job not already cached in `out_dir/jobs`; return all scores.

    `threads`: torch threads in each worker process (default: the machine's cores divided by `workers`).
    `segments`: video -> (start, stop) frames scored on their own as well (`final_clean_ranges`).
    `camera`: replay every video as a camera at its fps against its cost model (`camera_eval`) instead."""
    (out_dir / "jobs").mkdir(parents=True, exist_ok=True)
    computed = [r for r in rows if r.alias_of is None]
    jobs = [
        (video, row, seed)
        for row in computed
        for seed in range(row.seeds if row.seeds is not None else seeds)
        for video in limit_videos(videos, families, row.max_videos_per_family)
    ]
    jobs.sort(key=lambda job: job_priority(*job, [r.name for r in computed]))
    keys = {r.name: run_key(model_dir, r, max_frames, camera) for r in computed}
    todo = [j for j in jobs if not job_path(out_dir, j[0], j[1].name, j[2], keys[j[1].name]).is_file()]
    if not run:  # report only: use what has finished
        jobs, todo = [j for j in jobs if j not in todo], []
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    log.info("%d jobs, %d cached, %d to run on %d workers x %d torch threads", len(jobs), len(jobs) - len(todo),
             len(todo), workers, threads)
    if todo:
        _run_jobs(todo, keys, model_dir, root, split, out_dir, workers, threads, max_frames, segments or {}, camera)
    scores = [VideoScore(**json.loads(job_path(out_dir, v, r.name, s, keys[r.name]).read_text())) for v, r, s in jobs]
    for alias in (r for r in rows if r.alias_of is not None):
        scores += [replace(s, row=alias.name) for s in scores if s.row == alias.alias_of]
    return scores


def _run_jobs(todo: list, keys: dict[str, str], model_dir: Path, root: Path, split: str, out_dir: Path, workers: int,
              threads: int, max_frames: int | None, segments: dict[str, tuple[int, int]],
              camera: CameraSpec | None = None) -> None:
    with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(str(model_dir), threads)) as pool:
        futures = {
            pool.submit(_run_job, str(root), split, v, r.model_dump(), s, max_frames, segments.get(v), camera):
                (v, r.name, s)
            for v, r, s in todo
        }
        failed = []
        for fut in tqdm(as_completed(futures), total=len(futures), desc="benchmark", unit="video"):
            v, r, s = futures[fut]
            try:
                job_path(out_dir, v, r, s, keys[r]).write_text(json.dumps(fut.result()))
            except Exception as exc:  # one bad job must not discard the others: report them all at the end
                log.error("job %s / %s / seed %d failed: %s", v, r, s, exc)
                failed.append(f"{v}/{r}/s{s}: {exc}")
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(todo)} benchmark jobs failed (finished ones are cached): " + "; ".join(failed[:5]))
