"""Generator layout on disk, determinism, and writer -> reader round trips (stills and videos)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mask2former_ttt.data import (
    SYNTHETIC, Augment, StillDataset, SyntheticVideo, collate, generate_dataset, list_videos,
)
from mask2former_ttt.data.formats import (
    decode_kitti_step, encode_kitti_step, id_to_rgb, load_rgb, rgb_to_id,
)
from mask2former_ttt.data.shifts import shift_params_from_json
from mask2former_ttt.data.video import VideoSpec

SIZE = (48, 64)
KW = dict(
    n_train_stills=6, stills_per_world=4, n_val_worlds=1, n_test_worlds=1, families=("clean", "fog", "drift"),
    frames_per_video=10, val_frames=5, size=SIZE, seed=123, progress=False,
)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("synth"), **KW)


def _tree_digest(root: Path) -> dict[str, str]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_layout_on_disk(root: Path) -> None:
    for i in range(6):
        for d in ("images", "semantic", "panoptic"):
            assert (root / d / "train" / f"{i:06d}.png").is_file()
    assert (root / "panoptic_train.json").is_file() and (root / "meta.json").is_file()
    videos = json.loads((root / "videos.json").read_text())["videos"]
    expected = {f"test-{f}-w00" for f in ("clean", "fog", "drift", "segments", "return")}
    expected |= {f"val-{f}-w00" for f in ("clean", "fog", "drift", "segments", "return")}
    assert set(videos) == expected
    for name, info in videos.items():
        split = info["split"]
        assert name.startswith(split)
        n = 10 if split == "test" else 5
        assert info["frames"] == n and len(info["severity"]) == n and len(info["frame_family"]) == n
        assert {"family", "world_seed", "segments"} <= set(info)
        frames = sorted((root / "images" / split / name).glob("*.png"))
        assert [p.name for p in frames] == [f"{t:06d}.png" for t in range(n)]
        assert all((root / "panoptic_maps" / split / name / p.name).is_file() for p in frames)
    assert videos["test-fog-w00"]["world_seed"] == videos["test-clean-w00"]["world_seed"]
    assert videos["test-fog-w00"]["world_seed"] != videos["val-fog-w00"]["world_seed"]
    meta = json.loads((root / "meta.json").read_text())
    assert meta["classes"] == list(SYNTHETIC.class_names) and meta["thing_ids"] == [9, 10]
    assert len(meta["colors"]) == len(meta["classes"]) and meta["generator"]["seed"] == 123


def test_same_seed_same_bytes(root: Path, tmp_path: Path) -> None:
    again = generate_dataset(tmp_path / "again", **{**KW, "workers": 2})
    assert _tree_digest(root) == _tree_digest(again)
    other = generate_dataset(tmp_path / "other", **{**KW, "seed": 124})
    assert _tree_digest(root) != _tree_digest(other)
    with pytest.raises(FileExistsError):
        generate_dataset(again, **KW)


def test_coco_json_consistent_with_png(root: Path) -> None:
    js = json.loads((root / "panoptic_train.json").read_text())
    cats = {c["id"]: c for c in js["categories"]}
    assert len(cats) == SYNTHETIC.num_classes
    assert [c["id"] for c in js["categories"]] == list(range(1, 12))
    assert {cid for cid, c in cats.items() if c["isthing"]} == {t + 1 for t in SYNTHETIC.thing_ids}
    assert len(js["images"]) == len(js["annotations"]) == 6
    for ann in js["annotations"]:
        ids = rgb_to_id(load_rgb(root / "panoptic" / "train" / ann["file_name"]))
        sem = np.asarray(load_rgb(root / "semantic" / "train" / ann["file_name"]))[..., 0]
        present = set(np.unique(ids).tolist()) - {0}
        assert present == {s["id"] for s in ann["segments_info"]}
        for s in ann["segments_info"]:
            m = ids == s["id"]
            assert s["area"] == int(m.sum())
            ys, xs = np.nonzero(m)
            x0, y0 = int(xs.min()), int(ys.min())
            assert s["bbox"] == [x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1]
            assert (sem[m] == s["category_id"] - 1).all()
            assert s["iscrowd"] == 0
        assert sum(s["area"] for s in ann["segments_info"]) == ids.size  # every synthetic pixel is labelled


def test_kitti_step_encoding() -> None:
    rng = np.random.default_rng(0)
    sem = rng.integers(0, 19, (8, 9)).astype(np.uint8)
    inst = rng.integers(0, 65536, (8, 9)).astype(np.int32)
    rgb = encode_kitti_step(sem, inst)
    assert (rgb[..., 0] == sem).all() and (rgb[..., 1].astype(int) * 256 + rgb[..., 2] == inst).all()
    s2, i2 = decode_kitti_step(rgb)
    assert np.array_equal(s2, sem) and np.array_equal(i2, inst)
    ids = rng.integers(0, 2**24, (5, 5))
    assert np.array_equal(rgb_to_id(id_to_rgb(ids)), ids)
    assert (id_to_rgb(np.array([[1 + 2 * 256 + 3 * 65536]]))[0, 0] == [1, 2, 3]).all()


def test_still_round_trip(root: Path) -> None:
    from mask2former_ttt.data.camera import random_pose
    from mask2former_ttt.data.generate import STILL_WORLD_WIDTH
    from mask2former_ttt.data.seeding import derive_seed, rng_for
    from mask2former_ttt.data.world import World

    ds = StillDataset(root, "train")
    assert ds.format == "coco" and len(ds) == 6 and ds.labels.thing_ids == (9, 10)
    world = World.generate(derive_seed(123, "train-world", 1), STILL_WORLD_WIDTH, 256)
    f = world.render(random_pose(world.width, 256, SIZE, rng_for(123, "train-still", 5)), SIZE)
    s = ds[5]
    assert s["name"] == "000005"
    assert torch.equal(s["image"], torch.from_numpy(f.image).permute(2, 0, 1))
    assert torch.equal(s["semantic"], torch.from_numpy(f.semantic.astype(np.int64)))
    assert torch.equal(s["instance"], torch.from_numpy(f.instance.astype(np.int64)))
    _check_targets(s)


def _check_targets(s: dict) -> None:
    masks, classes, sem, inst = s["mask_labels"], s["class_labels"], s["semantic"], s["instance"]
    assert masks.dtype == torch.float32 and classes.dtype == torch.int64 and masks.shape[0] == classes.shape[0]
    assert masks.shape[1:] == sem.shape
    assert (masks.sum(0) <= 1).all()  # disjoint
    valid = sem != 255
    assert torch.equal(masks.sum(0).bool(), valid)  # cover all labelled pixels (no crowd in synthetic)
    for m, c in zip(masks.bool(), classes.tolist()):
        assert (sem[m] == c).all()
        if c in SYNTHETIC.thing_ids:
            assert inst[m].unique().numel() == 1 and inst[m][0] > 0
    stuff_present = set(sem[valid & ~torch.isin(sem, torch.tensor(SYNTHETIC.thing_ids))].unique().tolist())
    things = {(c, i) for c, i in zip(sem[inst > 0].tolist(), inst[inst > 0].tolist())}
    assert len(classes) == len(stuff_present) + len(things)


def test_video_round_trip(root: Path) -> None:
    meta = json.loads((root / "meta.json").read_text())
    videos = list_videos(root, "test")
    assert [v.name for v in videos] == sorted(f"test-{f}-w00" for f in ("clean", "fog", "drift", "segments", "return"))
    for seq in videos:
        assert len(seq) == 10 and seq.info["family"] == seq.name.split("-")[1]
        spec = VideoSpec.from_json(seq.name, seq.info, shift_params_from_json(meta["generator"]["shift_params"]))
        synth = SyntheticVideo(spec)
        for t, item in enumerate(seq):
            f = synth.frame(t)
            assert item["index"] == t and item["video"] == seq.name
            assert torch.equal(item["image"], torch.from_numpy(f.image).permute(2, 0, 1))
            assert torch.equal(item["semantic"], torch.from_numpy(f.semantic.astype(np.int64)))
            assert torch.equal(item["instance"], torch.from_numpy(f.instance.astype(np.int64)))
            assert item["severity"] == pytest.approx(spec.program.severity_at(t), abs=1e-6)
        _check_targets(seq[3])
    # track ids are stable across frames: the same instance keeps its id
    clean = next(v for v in videos if v.name == "test-clean-w00")
    a, b = clean[0], clean[1]
    shared = set(a["instance"].unique().tolist()) & set(b["instance"].unique().tolist()) - {0}
    assert shared


def test_augment_and_collate(root: Path) -> None:
    torch.manual_seed(0)
    ds = StillDataset(root, "train", augment=Augment(crop_size=(40, 40), scale_range=(0.5, 2.0)))
    batch = collate([ds[i] for i in range(4)])
    assert batch["image"].shape == (4, 3, 40, 40) and batch["image"].dtype == torch.uint8
    assert batch["semantic"].shape == (4, 40, 40)
    assert len(batch["mask_labels"]) == 4 and all(m.shape[1:] == (40, 40) for m in batch["mask_labels"])
    for i in range(4):
        s = {k: batch[k][i] for k in ("mask_labels", "class_labels", "semantic", "instance")}
        m, sem = s["mask_labels"], s["semantic"]
        assert torch.equal(m.sum(0).bool(), sem != 255)
    torch.manual_seed(0)
    again = collate([ds[i] for i in range(4)])
    assert torch.equal(batch["image"], again["image"])
    big = StillDataset(root, "train", augment=Augment(crop_size=(80, 100), scale_range=(1.0, 1.0)))[0]
    assert big["image"].shape == (3, 80, 100) and (big["semantic"][SIZE[0]:] == 255).all()  # padded with ignore
    rs = StillDataset(root, "train", resize=(24, 32))[0]
    assert rs["image"].shape == (3, 24, 32) and rs["mask_labels"].shape[1:] == (24, 32)


def test_videos_as_stills(root: Path) -> None:
    ds = StillDataset(root, "val")
    assert ds.format == "kitti-step" and len(ds) == 5 * 5
