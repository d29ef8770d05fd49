"""Boxes and polygons of results (mask2former_ttt.outputs): `bbox` in segments_info is what pycocotools' `toBbox`
gives for the segment's RLE, and the `polygons` encoding rasterises back (pycocotools `frPyObjects`) to its mask."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from scipy.ndimage import binary_erosion, binary_fill_holes, gaussian_filter

from mask2former_ttt.outputs import encode_masks, rle_decode, segments_info
from mask2former_ttt.outputs.polygons import mask_polygons
from model.postprocess import InstanceResult, PanopticResult, SemanticResult

H, W = 72, 96
NAMES = [f"c{i}" for i in range(19)]


def blobs(seed: int, n: int) -> np.ndarray:
    """(n, H, W) bool: smooth random shapes, several components each, some touching the frame's edges."""
    rng = np.random.default_rng(seed)
    fields = np.stack([gaussian_filter(rng.standard_normal((H, W)), 5) for _ in range(n)])
    return fields > fields.std(axis=(1, 2), keepdims=True)


def coco_bbox(mask: np.ndarray) -> list[float]:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return mask_utils.toBbox(rle).tolist()


def rasterise(polygons: list[list[float]]) -> np.ndarray:
    """COCO polygons -> (H, W) bool, by pycocotools."""
    if not polygons:
        return np.zeros((H, W), bool)
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygons, H, W))).astype(bool)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def instance_result() -> InstanceResult:
    masks = blobs(0, 4)
    masks[3] = False  # an empty mask: box [0, 0, 0, 0], no polygon
    return InstanceResult(torch.tensor([11, 12, 13, 14]), torch.tensor([0.9, 0.8, 0.7, 0.6]), torch.from_numpy(masks))


def panoptic_result() -> PanopticResult:
    ids = np.zeros((H, W), np.int32)
    for i, m in enumerate(blobs(1, 5)):  # later blobs paint over earlier ones: ragged, non-convex segments
        ids[m] = i + 3
    present = [int(v) for v in np.unique(ids) if v]
    infos = [{"id": v, "category_id": 11 if v % 2 else 0, "isthing": bool(v % 2), "score": 0.5,
              "area": int((ids == v).sum())} for v in present]
    return PanopticResult(torch.from_numpy(ids), infos)


def test_instance_boxes_are_pycocotools_boxes_of_their_rles() -> None:
    result = instance_result()
    segs = segments_info("instance", result, NAMES)
    rles = rle_decode(encode_masks("instance", result, ["rle"], segs)["rle"])
    assert [s["bbox"] for s in segs] == [coco_bbox(m) for m in rles]
    assert segs[3]["bbox"] == [0, 0, 0, 0] and all(s["bbox"][2] > 0 for s in segs[:3])


def test_panoptic_segments_carry_pycocotools_boxes() -> None:
    result = panoptic_result()
    segs = segments_info("panoptic", result, NAMES)
    ids = result.id_map.numpy()
    assert any(s["isthing"] for s in segs) and len(segs) >= 3
    for s in segs:
        assert s["bbox"] == coco_bbox(ids == s["id"]), s


@pytest.mark.parametrize("task", ["semantic", "instance", "panoptic"])
def test_polygons_rasterise_back_to_their_masks(task: str) -> None:
    """Each mask's polygons cover the mask with its holes filled (polygons are outer contours)."""
    result = {
        "semantic": lambda: SemanticResult(torch.from_numpy(panoptic_result().id_map.numpy().astype(np.int64) % 19)),
        "instance": instance_result,
        "panoptic": panoptic_result,
    }[task]()
    segs = segments_info(task, result, NAMES)
    enc = encode_masks(task, result, ["rle", "polygons"], segs)
    masks = rle_decode(enc["rle"])
    assert len(enc["polygons"]) == len(segs) == len(masks)
    for mask, polygons in zip(masks, enc["polygons"], strict=True):
        if not mask.any():
            assert polygons == []
            continue
        assert all(len(p) >= 6 and len(p) % 2 == 0 for p in polygons)
        assert iou(rasterise(polygons), binary_fill_holes(mask)) > 0.9, task  # outer contours: holes filled


def test_polygons_are_simplified_outer_contours() -> None:
    yy, xx = np.mgrid[:H, :W]
    disc = (yy - 36) ** 2 + (xx - 48) ** 2 < 30**2
    ring = disc & ((yy - 36) ** 2 + (xx - 48) ** 2 >= 10**2)  # a hole in the middle
    polygons = mask_polygons(ring)
    assert len(polygons) == 1  # the hole is no polygon of its own
    assert iou(rasterise(polygons), disc) > 0.97  # the outline, filled
    boundary = int((disc & ~binary_erosion(disc)).sum())  # the pixels a traced contour passes
    assert len(polygons[0]) // 2 < boundary // 3  # simplified: far fewer points
    assert mask_polygons(np.zeros((H, W), bool)) == []
    single = np.zeros((H, W), bool)
    single[0, W - 1] = True  # one pixel in a corner
    assert iou(rasterise(mask_polygons(single)), single) == 1.0
