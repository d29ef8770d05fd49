"""COCO-panoptic annotation JSON (the format of `panoptic_val2017.json`) for a sequence of frames."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from mask2former_ttt.outputs.masks import as_numpy, segment_bboxes
from mask2former_ttt.outputs.palette import class_colors


def categories(class_names: Sequence[str], thing_class_ids: Sequence[int]) -> list[dict]:
    """COCO-panoptic `categories`: `{id, name, isthing (0/1), color}` for every class."""
    things = set(int(i) for i in thing_class_ids)
    colors = class_colors(class_names)
    return [
        {
            "id": i,
            "name": n,
            "supercategory": "thing" if i in things else "stuff",
            "isthing": int(i in things),
            "color": colors[i].tolist(),
        }
        for i, n in enumerate(class_names)
    ]


def annotation(image_id: int, file_name: str, id_map: Any, segments_info: Sequence[dict]) -> dict:
    """One COCO-panoptic `annotations` entry; segments get `bbox`, `area` and `iscrowd` from the id map."""
    ids = as_numpy(id_map)
    n = max([int(s["id"]) for s in segments_info], default=0) + 1
    boxes = segment_bboxes(ids, n)
    areas = np.bincount(ids.ravel().astype(np.int64), minlength=n)
    segs = [
        {
            "id": int(s["id"]),
            "category_id": int(s["category_id"]),
            "area": int(areas[int(s["id"])]),
            "bbox": boxes[int(s["id"])].tolist(),
            "iscrowd": 0,
            "score": float(s.get("score", 1.0)),
        }
        for s in segments_info
    ]
    return {"image_id": image_id, "file_name": file_name, "segments_info": segs}


def panoptic_json(
    images: list[dict], annotations: list[dict], class_names: Sequence[str], thing_class_ids: Sequence[int]
) -> dict:
    """The full COCO-panoptic document: `images`, `annotations`, `categories`."""
    return {"images": images, "annotations": annotations, "categories": categories(class_names, thing_class_ids)}
