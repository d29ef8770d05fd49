"""Writers for the on-disk layouts (all paths relative to the dataset root).

Training stills (COCO-panoptic + semantic)::

    images/<split>/<name>.png            RGB
    semantic/<split>/<name>.png          uint8 class ids (255 = ignore)
    panoptic/<split>/<name>.png          RGB, segment id = R + 256 G + 256^2 B (0 = void)
    panoptic_<split>.json                COCO panoptic: images, annotations/segments_info, categories

Videos (KITTI-STEP)::

    images/<split>/<video>/%06d.png      RGB
    panoptic_maps/<split>/<video>/%06d.png   R = class id, G * 256 + B = instance (track) id
    videos.json                          video name -> {split, family, world_seed, frames, severity, ...}

    meta.json                            class names, thing ids, colours, generator settings

COCO category ids are ``class + 1`` (0 stays free for void); segment ids are
``(class + 1) * 65536 + instance`` (see :mod:`.formats`), flagged in the JSON ``info``.
Outputs are byte-deterministic for identical inputs (fixed PNG settings, sorted JSON).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from .classes import LabelSet
from .formats import encode_kitti_step, id_to_rgb, panoptic_from_semantic, save_png, segment_stats

SEGMENT_ID_ENCODING = "class_instance"  # segment id = (class + 1) * 65536 + instance


def _dump_json(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n")


def write_still(
    root: str | Path, split: str, name: str, image: np.ndarray, semantic: np.ndarray, instance: np.ndarray,
    labels: LabelSet, image_id: int,
) -> tuple[dict, dict]:
    """Write one still's image / semantic / panoptic PNGs.

    image (H, W, 3) uint8, semantic (H, W) uint8, instance (H, W) int. Returns the COCO ``images`` and
    ``annotations`` entries (collect them and call :func:`write_coco_json`).
    """
    root = Path(root)
    h, w = semantic.shape
    save_png(root / "images" / split / f"{name}.png", image)
    save_png(root / "semantic" / split / f"{name}.png", semantic.astype(np.uint8))
    pan, segs = panoptic_from_semantic(semantic, instance, labels.thing_ids, labels.ignore_index)
    save_png(root / "panoptic" / split / f"{name}.png", id_to_rgb(pan))
    stats = segment_stats(pan)
    segments_info = [
        {
            "id": sid,
            "category_id": s.category_id + 1,
            "iscrowd": int(s.iscrowd),
            "area": stats[sid][0],
            "bbox": stats[sid][1],
        }
        for sid, s in sorted(segs.items())
    ]
    img_entry = {"id": image_id, "file_name": f"{name}.png", "height": h, "width": w}
    ann_entry = {"image_id": image_id, "file_name": f"{name}.png", "segments_info": segments_info}
    return img_entry, ann_entry


def coco_categories(labels: LabelSet) -> list[dict]:
    """COCO panoptic ``categories``: id = class + 1, with ``isthing`` and display colour."""
    return [
        {"id": i + 1, "name": n, "isthing": int(labels.is_thing(i)), "color": list(labels.colors[i]),
         "supercategory": "thing" if labels.is_thing(i) else "stuff"}
        for i, n in enumerate(labels.class_names)
    ]


def write_coco_json(
    root: str | Path, split: str, images: list[dict], annotations: list[dict], labels: LabelSet
) -> Path:
    """Write ``panoptic_<split>.json`` (entries sorted by image id)."""
    path = Path(root) / f"panoptic_{split}.json"
    _dump_json(
        path,
        {
            "info": {"description": f"{labels.name} {split} stills", "segment_id_encoding": SEGMENT_ID_ENCODING,
                     "panoptic_dir": f"panoptic/{split}", "image_dir": f"images/{split}"},
            "images": sorted(images, key=lambda d: d["id"]),
            "annotations": sorted(annotations, key=lambda d: d["image_id"]),
            "categories": coco_categories(labels),
        },
    )
    return path


def write_video_frame(
    root: str | Path, split: str, video: str, t: int, image: np.ndarray, semantic: np.ndarray, instance: np.ndarray
) -> None:
    """Write frame ``t`` of ``video`` in the KITTI-STEP layout (image + panoptic map PNGs)."""
    root = Path(root)
    save_png(root / "images" / split / video / f"{t:06d}.png", image)
    save_png(root / "panoptic_maps" / split / video / f"{t:06d}.png", encode_kitti_step(semantic, instance))


def write_videos_manifest(root: str | Path, videos: dict[str, dict]) -> Path:
    """Write ``videos.json``: ``{"videos": {name: {...}}}`` (replaces an existing manifest)."""
    path = Path(root) / "videos.json"
    _dump_json(path, {"videos": videos})
    return path


def write_meta(root: str | Path, labels: LabelSet, generator: dict | None = None) -> Path:
    """Write ``meta.json`` (label set + generator settings)."""
    path = Path(root) / "meta.json"
    body = labels.to_json()
    if generator is not None:
        body["generator"] = generator
    _dump_json(path, body)
    return path


DATASET_OUTPUTS = ("images", "semantic", "panoptic", "panoptic_maps", "meta.json", "videos.json", "panoptic_train.json")


def prepare_dataset_root(root: str | Path, overwrite: bool) -> Path:
    """Create `root` for a generator's output. A root that already holds a dataset (``meta.json`` or ``videos.json``)
    is refused (FileExistsError) unless `overwrite`, which deletes the previous outputs (`DATASET_OUTPUTS`) only."""
    root = Path(root)
    if (root / "meta.json").exists() or (root / "videos.json").exists():
        if not overwrite:
            raise FileExistsError(f"{root} already holds a dataset; pass overwrite=True")
        for name in DATASET_OUTPUTS:
            p = root / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    root.mkdir(parents=True, exist_ok=True)
    return root
