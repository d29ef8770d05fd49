"""The readers on tiny fake trees in the real datasets' layouts (Cityscapes, KITTI-STEP, COCO)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mask2former_ttt.data import CITYSCAPES, KITTI_STEP, StillDataset, detect_format, list_videos
from mask2former_ttt.data.formats import encode_kitti_step, id_to_rgb

H, W = 8, 12


def _img(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3)).astype(np.uint8)


def _cityscapes(root: Path, with_instances: bool) -> tuple[np.ndarray, np.ndarray]:
    city = "aachen"
    stem = f"{city}_000000_000019"
    (root / "leftImg8bit" / "train" / city).mkdir(parents=True)
    (root / "gtFine" / "train" / city).mkdir(parents=True)
    img = _img(0)
    Image.fromarray(img).save(root / "leftImg8bit" / "train" / city / f"{stem}_leftImg8bit.png")
    sem = np.full((H, W), 10, np.uint8)  # sky
    sem[4:, :] = 0  # road
    sem[0, 0] = 255  # ignore
    sem[5:7, 1:4] = 13  # car #0
    sem[5:7, 6:9] = 13  # car #1
    sem[2:4, 10:12] = 11  # person crowd (no instance)
    Image.fromarray(sem).save(root / "gtFine" / "train" / city / f"{stem}_gtFine_labelTrainIds.png")
    if with_instances:
        ids = np.full((H, W), 23, np.int32)  # sky labelId
        ids[4:, :] = 7  # road labelId
        ids[0, 0] = 0  # unlabeled
        ids[5:7, 1:4] = 26000
        ids[5:7, 6:9] = 26001
        ids[2:4, 10:12] = 24  # person group (crowd): labelId only
        Image.fromarray(ids.astype(np.uint16)).save(root / "gtFine" / "train" / city / f"{stem}_gtFine_instanceIds.png")
    return img, sem


def test_cityscapes_semantic(tmp_path: Path) -> None:
    img, sem = _cityscapes(tmp_path, with_instances=False)
    assert detect_format(tmp_path, "train") == "cityscapes"
    ds = StillDataset(tmp_path, "train")
    assert ds.labels == CITYSCAPES and len(ds) == 1
    s = ds[0]
    assert s["name"] == "aachen_000000_000019"
    assert torch.equal(s["image"], torch.from_numpy(img).permute(2, 0, 1))
    assert torch.equal(s["semantic"], torch.from_numpy(sem.astype(np.int64)))
    # semantic-only: one mask per class present
    assert sorted(s["class_labels"].tolist()) == [0, 10, 11, 13]
    assert torch.equal(s["mask_labels"].sum(0).bool(), s["semantic"] != 255)


def test_cityscapes_instances(tmp_path: Path) -> None:
    _, sem = _cityscapes(tmp_path, with_instances=True)
    s = StillDataset(tmp_path, "train")[0]
    assert torch.equal(s["semantic"], torch.from_numpy(sem.astype(np.int64)))
    cls = s["class_labels"].tolist()
    assert sorted(cls) == [0, 10, 13, 13]  # two cars; the crowd person is not a target
    cars = s["mask_labels"][torch.tensor(cls) == 13]
    assert cars.sum().item() == 12 and (cars.sum((1, 2)) == 6).all()
    assert set(s["instance"][s["semantic"] == 13].unique().tolist()) == {1, 2}
    assert any(seg["iscrowd"] and seg["category_id"] == 11 for seg in s["segments"])


def _kitti_step(root: Path) -> list[np.ndarray]:
    sems = []
    for seq in ("0000", "0001"):
        for t in range(3):
            (root / "images" / "val" / seq).mkdir(parents=True, exist_ok=True)
            (root / "panoptic_maps" / "val" / seq).mkdir(parents=True, exist_ok=True)
            Image.fromarray(_img(t)).save(root / "images" / "val" / seq / f"{t:06d}.png")
            sem = np.full((H, W), 2, np.uint8)
            sem[5:, :] = 0
            sem[5:7, t:t + 3] = 13
            sem[0, :] = 255
            inst = np.where(sem == 13, 300 + t % 2, 0).astype(np.int32)  # big track ids use the G channel
            sem[2, 2] = 11  # person pixel without a track id -> crowd
            Image.fromarray(encode_kitti_step(sem, inst)).save(root / "panoptic_maps" / "val" / seq / f"{t:06d}.png")
            sems.append(sem)
    return sems


def test_kitti_step_videos(tmp_path: Path) -> None:
    sems = _kitti_step(tmp_path)
    videos = list_videos(tmp_path, "val")
    assert [v.name for v in videos] == ["0000", "0001"] and videos[0].labels == KITTI_STEP
    items = list(videos[0])
    assert [i["index"] for i in items] == [0, 1, 2] and "severity" not in items[0]
    for t, it in enumerate(items):
        assert torch.equal(it["semantic"], torch.from_numpy(sems[t].astype(np.int64)))
        assert set(it["instance"].unique().tolist()) == {0, 300 + t % 2}
        assert sorted(it["class_labels"].tolist()) == [0, 2, 13]
    assert StillDataset(tmp_path, "val").format == "kitti-step"
    assert len(StillDataset(tmp_path, "val")) == 6
    small = list_videos(tmp_path, "val", resize=(4, 6))[1][0]
    assert small["image"].shape == (3, 4, 6) and small["semantic"].shape == (4, 6)


def test_coco_official_layout_sparse_categories(tmp_path: Path) -> None:
    (tmp_path / "annotations" / "panoptic_val2017").mkdir(parents=True)
    (tmp_path / "val2017").mkdir()
    Image.fromarray(_img(3)).save(tmp_path / "val2017" / "000000000139.jpg", quality=95)
    ids = np.zeros((H, W), np.int64)
    ids[:4] = 5_000_001  # stuff "wall" (category 199)
    ids[4:, :6] = 77  # thing "person" (category 1)
    ids[4:, 6:] = 78  # thing "dog" (category 18), crowd
    Image.fromarray(id_to_rgb(ids)).save(tmp_path / "annotations" / "panoptic_val2017" / "000000000139.png")
    js = {
        "images": [{"id": 139, "file_name": "000000000139.jpg", "height": H, "width": W}],
        "annotations": [{"image_id": 139, "file_name": "000000000139.png", "segments_info": [
            {"id": 77, "category_id": 1, "iscrowd": 0, "area": 24, "bbox": [0, 4, 6, 4]},
            {"id": 78, "category_id": 18, "iscrowd": 1, "area": 24, "bbox": [6, 4, 6, 4]},
            {"id": 5_000_001, "category_id": 199, "iscrowd": 0, "area": 48, "bbox": [0, 0, 12, 4]},
        ]}],
        "categories": [
            {"id": 199, "name": "wall-other", "isthing": 0, "color": [1, 2, 3]},
            {"id": 1, "name": "person", "isthing": 1, "color": [220, 20, 60]},
            {"id": 18, "name": "dog", "isthing": 1, "color": [0, 0, 142]},
        ],
    }
    (tmp_path / "annotations" / "panoptic_val2017.json").write_text(json.dumps(js))
    ds = StillDataset(tmp_path, "val2017")
    assert ds.format == "coco" and ds.labels.class_names == ("person", "dog", "wall-other")
    assert ds.labels.thing_ids == (0, 1)
    s = ds[0]
    assert s["image"].shape == (3, H, W)
    expected = np.full((H, W), 2)
    expected[4:, :6], expected[4:, 6:] = 0, 1
    assert torch.equal(s["semantic"], torch.from_numpy(expected))
    assert sorted(s["class_labels"].tolist()) == [0, 2]  # crowd dog excluded from targets
    assert s["instance"][4:, :6].unique().tolist() == [1] and (s["instance"][:4] == 0).all()
