"""Domain B (aerial): layout on disk, determinism, labels, readers, paired severity-0 frames, schedules, the
return video, every corruption, independence from domain A's code, and the CLI switch."""

from __future__ import annotations

import ast
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from typer.testing import CliRunner

from mask2former_ttt.data.aerial import (
    AERIAL, AERIAL_FAMILIES, SHIFT_FAMILIES, AerialProgram, AerialVideo, corrupt, generate_aerial_dataset,
    make_aerial_video_spec, paint_map,
)
from mask2former_ttt.data.aerial.fields import smoothstep
from mask2former_ttt.data.aerial.video import AerialVideoSpec
from mask2former_ttt.data.formats import decode_kitti_step, load_raw, load_rgb
from mask2former_ttt.data.readers import StillDataset, list_videos

SIZE = (64, 80)
N = 12  # frames per video
KW = dict(n_train_stills=8, stills_per_world=4, n_val_worlds=1, n_test_worlds=1, frames_per_video=N, size=SIZE,
          seed=7, progress=False)
AERIAL_DIR = Path(__file__).resolve().parents[2] / "mask2former_ttt" / "data" / "aerial"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_aerial_dataset(tmp_path_factory.mktemp("aerial") / "data", **KW)


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _frame(root: Path, split: str, video: str, t: int) -> np.ndarray:
    return load_rgb(root / "images" / split / video / f"{t:06d}.png")


def _labels(root: Path, split: str, video: str, t: int) -> np.ndarray:
    return load_rgb(root / "panoptic_maps" / split / video / f"{t:06d}.png")


def _diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


# --- layout and determinism -------------------------------------------------------------------------------
def test_layout_manifest_and_meta(root: Path) -> None:
    for i in range(8):
        for d in ("images", "semantic", "panoptic"):
            assert (root / d / "train" / f"{i:06d}.png").is_file()
    videos = json.loads((root / "videos.json").read_text())["videos"]
    expected = {f"{s}-{f}-w00" for s in ("val", "test") for f in (*AERIAL_FAMILIES, "return")}
    assert set(videos) == expected
    for name, info in videos.items():
        assert {"split", "family", "frames", "size", "severity", "frame_family", "segments", "world_seed"} <= set(info)
        assert name.startswith(info["split"]) and info["frames"] == N and info["size"] == list(SIZE)
        assert len(info["severity"]) == len(info["frame_family"]) == N and info["domain"] == "aerial"
        frames = sorted((root / "images" / info["split"] / name).glob("*.png"))
        assert [p.name for p in frames] == [f"{t:06d}.png" for t in range(N)]
        assert all((root / "panoptic_maps" / info["split"] / name / p.name).is_file() for p in frames)
    seeds = {name: videos[name]["world_seed"] for name in ("test-fog-w00", "test-clean-w00", "val-fog-w00")}
    assert seeds["test-fog-w00"] == seeds["test-clean-w00"] != seeds["val-fog-w00"]
    meta = json.loads((root / "meta.json").read_text())
    assert meta["classes"] == ["ground", "grass", "water", "road", "roof", "tree", "vehicle"]
    assert meta["thing_ids"] == [4, 6] and len(meta["colors"]) == 7
    gen = meta["generator"]
    assert gen["domain"] == "aerial" and gen["seed"] == 7 and gen["families"] == list(AERIAL_FAMILIES)


def test_same_arguments_same_bytes_any_workers(root: Path, tmp_path: Path) -> None:
    again = generate_aerial_dataset(tmp_path / "again", **{**KW, "workers": 2})
    assert _digest(again) == _digest(root)
    other = generate_aerial_dataset(tmp_path / "other", **{**KW, "seed": 8, "n_val_worlds": 0})
    assert _digest(other)["images/train/000000.png"] != _digest(root)["images/train/000000.png"]
    with pytest.raises(FileExistsError):
        generate_aerial_dataset(other, **KW)
    generate_aerial_dataset(other, **{**KW, "overwrite": True})
    assert _digest(other) == _digest(root)
    with pytest.raises(ValueError, match="unknown aerial families"):
        generate_aerial_dataset(tmp_path / "bad", **{**KW, "families": ("clean", "rain")})


# --- labels -------------------------------------------------------------------------------------------------
def test_every_class_appears_in_the_train_stills(root: Path) -> None:
    seen: set[int] = set()
    for p in sorted((root / "semantic" / "train").glob("*.png")):
        seen |= set(np.unique(load_raw(p)).tolist())
    assert seen == set(range(7))


def test_instance_ids_unique_per_thing_and_zero_on_stuff() -> None:
    m = paint_map(11, (384, 384), 0.5)
    sem, inst = m.semantic, m.instance
    things = np.isin(sem, AERIAL.thing_ids)
    assert (inst[~things] == 0).all() and (inst[things] > 0).all()
    ids = np.unique(inst[things])
    assert len(ids) > 10
    for i in ids:
        classes = np.unique(sem[inst == i])
        assert len(classes) == 1, (i, classes)  # one id, one class
        assert ndimage.label(inst == i, np.ones((3, 3)))[1] == 1, i  # one id, one (convex) object
    assert {int(np.unique(sem[inst == i])[0]) for i in ids} == set(AERIAL.thing_ids)
    # the same holds in the rendered, encoded video frames
    sem_f, inst_f = decode_kitti_step(_labels_of_video(m))
    assert (inst_f[~np.isin(sem_f, AERIAL.thing_ids)] == 0).all()


def _labels_of_video(m) -> np.ndarray:
    from mask2former_ttt.data.formats import encode_kitti_step

    v = AerialVideo(make_aerial_video_spec("v", "test", "clean", 11, 3, SIZE, (384, 384)), m)
    f = v.frame(1)
    return encode_kitti_step(f.semantic, f.instance)


def test_readers_read_it_back_with_seven_classes(root: Path) -> None:
    ds = StillDataset(root, "train")
    assert len(ds) == 8 and ds.labels.num_classes == 7 and ds.labels.thing_ids == (4, 6)
    s = ds[0]
    assert tuple(s["image"].shape) == (3, *SIZE) and s["mask_labels"].shape[0] == len(s["class_labels"]) > 0
    assert int(s["semantic"].max()) < 7
    seqs = {v.name: v for v in list_videos(root, "test")}
    assert set(seqs) == {f"test-{f}-w00" for f in (*AERIAL_FAMILIES, "return")}
    seq = seqs["test-fog-w00"]
    assert seq.labels.num_classes == 7 and len(seq) == N and seq.family == "fog"
    item = seq[N - 1]
    assert item["severity"] == 1.0 and item["family"] == "fog"


# --- pairing, schedules, the return video ----------------------------------------------------------------
def test_severity_zero_frames_are_the_clean_frames_and_labels_are_shared(root: Path) -> None:
    videos = json.loads((root / "videos.json").read_text())["videos"]
    for fam in SHIFT_FAMILIES:
        name = f"test-{fam}-w00"
        assert videos[name]["severity"][0] == 0.0
        assert np.array_equal(_frame(root, "test", name, 0), _frame(root, "test", "test-clean-w00", 0)), fam
        assert _diff(_frame(root, "test", name, N - 1), _frame(root, "test", "test-clean-w00", N - 1)) > 1.0, fam
        for t in (0, N // 2, N - 1):
            assert np.array_equal(_labels(root, "test", name, t), _labels(root, "test", "test-clean-w00", t))
    assert all(s == 0.0 for s in videos["test-clean-w00"]["severity"])


def test_smoothstep_ramp_shape() -> None:
    p = AerialProgram("fog", 200, seed=1)
    sev = [p.severity_at(t) for t in range(200)]
    assert sev[0] == 0.0 and sev[35] == pytest.approx(0.5) and sev[70] == 1.0 and sev[199] == 1.0
    assert sev[14] == pytest.approx(smoothstep(0.2)) and sev[14] < 0.2  # slow start (not linear)
    assert all(b >= a for a, b in zip(sev, sev[1:])) and min(sev[70:]) == 1.0
    half = AerialProgram("noise", 200, seed=1, max_severity=0.5)
    assert max(half.severity_at(t) for t in range(200)) == 0.5
    assert p.to_json()["severity"] == [round(s, 6) for s in sev]
    with pytest.raises(ValueError):
        AerialProgram("rain", 10, 0)


def test_return_video_drifts_away_and_comes_back_to_the_clean_frames(root: Path) -> None:
    info = json.loads((root / "videos.json").read_text())["videos"]["test-return-w00"]
    sev, fam = info["severity"], info["frame_family"]
    assert info["family"] == "return" and max(sev) == 1.0 and sev[0] == 0.0
    assert fam == ["clean" if s == 0 else "drift" for s in sev]
    peak = sev.index(1.0)
    assert all(b >= a for a, b in zip(sev[: peak + 1], sev[1 : peak + 1]))
    last = [t for t in range(N) if sev[t:] == [0.0] * (N - t)][0]
    assert N - last >= round(0.25 * N)  # the final quarter is clean
    assert all(b <= a for a, b in zip(sev[peak:last], sev[peak + 1 : last + 1]))
    for t in range(last, N):
        assert np.array_equal(_frame(root, "test", "test-return-w00", t), _frame(root, "test", "test-clean-w00", t))
    assert _diff(_frame(root, "test", "test-return-w00", peak), _frame(root, "test", "test-clean-w00", peak)) > 5
    from mask2former_ttt.evaluation.report import final_clean_segment

    assert final_clean_segment(fam) == (last, N)  # evaluation finds the forgetting range


def test_frames_regenerate_from_the_manifest(root: Path) -> None:
    videos = json.loads((root / "videos.json").read_text())["videos"]
    for name, t in (("test-noise-w00", 7), ("test-return-w00", 5), ("val-blur-w00", 11)):
        v = AerialVideo(AerialVideoSpec.from_json(name, videos[name]))
        assert np.array_equal(v.frame(t).image, _frame(root, videos[name]["split"], name, t)), name


# --- corruptions ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def clean_image() -> np.ndarray:
    return AerialVideo(make_aerial_video_spec("c", "test", "clean", 3, 4, (96, 120))).clean_frame(2).image


@pytest.mark.parametrize("family", SHIFT_FAMILIES)
def test_each_corruption_is_identity_at_zero_and_changes_the_image_at_one(family: str, clean_image: np.ndarray) -> None:
    assert np.array_equal(corrupt(clean_image, family, 0.0, seed=5, t=3), clean_image)
    full = corrupt(clean_image, family, 1.0, seed=5, t=3)
    assert full.shape == clean_image.shape and full.dtype == np.uint8
    assert _diff(full, clean_image) > 3.0, family
    assert _diff(corrupt(clean_image, family, 0.3, seed=5, t=3), clean_image) < _diff(full, clean_image), family
    assert np.array_equal(corrupt(clean_image, family, 0.7, seed=5, t=3), corrupt(clean_image, family, 0.7, 5, 3))
    assert np.array_equal(corrupt(clean_image, "clean", 1.0, seed=5, t=3), clean_image)


def test_noise_is_fresh_every_frame_and_fog_moves(clean_image: np.ndarray) -> None:
    assert not np.array_equal(corrupt(clean_image, "noise", 1.0, 5, 3), corrupt(clean_image, "noise", 1.0, 5, 4))
    assert not np.array_equal(corrupt(clean_image, "fog", 1.0, 5, 3), corrupt(clean_image, "fog", 1.0, 5, 40))
    assert not np.array_equal(corrupt(clean_image, "cast", 1.0, 5, 3), corrupt(clean_image, "cast", 1.0, 6, 3))


# --- independence from domain A ---------------------------------------------------------------------------
ALLOWED_SHARED = {"classes", "formats", "seeding", "writers"}  # the on-disk format code


def test_domain_b_does_not_import_domain_a_code() -> None:
    files = sorted(AERIAL_DIR.glob("*.py"))
    assert {"corruptions.py", "terrain.py", "camera.py", "generate.py"} <= {f.name for f in files}
    for f in files:
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level == 2:  # from ..x import y: mask2former_ttt.data.x
                    assert node.module in ALLOWED_SHARED, (f.name, node.module)
                assert node.level in (0, 1, 2), (f.name, node.module)
                if node.level == 0 and (node.module or "").startswith("mask2former_ttt"):
                    parts = node.module.split(".")
                    assert parts[:2] == ["mask2former_ttt", "data"] and len(parts) > 2, (f.name, node.module)
                    assert parts[2] == "aerial" or parts[2] in ALLOWED_SHARED, (f.name, node.module)
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("mask2former_ttt") for a in node.names), f.name
    code = ("import sys, mask2former_ttt.data.aerial as a; a.generate_aerial_dataset; "
            "print(' '.join(m for m in sys.modules if m.startswith('mask2former_ttt') or m == 'torch'))")
    run = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    loaded = set(run.stdout.split())
    domain_a = {f"mask2former_ttt.data.{m}" for m in
                ("shifts", "scenery", "world", "camera", "appearance", "video", "generate", "noise")}
    assert not loaded & domain_a, loaded & domain_a
    assert "torch" not in loaded and "mask2former_ttt.data.aerial.corruptions" in loaded


# --- CLI ---------------------------------------------------------------------------------------------------
def test_cli_generate_domain_switch(tmp_path: Path) -> None:
    from mask2former_ttt.cli import app

    runner = CliRunner()
    out = tmp_path / "aer"
    res = runner.invoke(app, ["generate", "--root", str(out), "--domain", "aerial", "--train-stills", "0",
                              "--frames", "4", "--test-worlds", "1", "--val-worlds", "0", "--workers", "1"])
    assert res.exit_code == 0, (res.output, res.exception)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["generator"]["domain"] == "aerial" and meta["classes"] == list(AERIAL.class_names)
    assert len(json.loads((out / "videos.json").read_text())["videos"]) == len(AERIAL_FAMILIES) + 1
    bad = runner.invoke(app, ["generate", "--root", str(tmp_path / "x"), "--domain", "moon"], env={"COLUMNS": "200"})
    assert bad.exit_code != 0 and "unknown domain" in bad.output and not (tmp_path / "x").exists()
