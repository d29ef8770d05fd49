"""The benchmark pipeline end to end on a miniature generated dataset: `m2f-ttt generate` -> `train` -> `evaluate`
(JSON in the documented schema, Markdown table, per-video curve plots, cached resumable jobs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mask2former_ttt.cli import app

FAMILIES = ("clean", "noise")


def invoke(*args: str) -> str:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(data root, checkpoint dir): 8 stills + 6-frame videos, a tiny model trained for 3 steps."""
    tmp = tmp_path_factory.mktemp("bench")
    data = tmp / "data"
    invoke("generate", "--root", str(data), "--train-stills", "8", "--frames", "6", "--test-worlds", "1",
           "--val-worlds", "1", "--workers", "1")
    invoke("train", "--data-root", str(data), "--out-dir", str(tmp / "run"), "--steps", "3", "--batch-size", "2",
           "--recon-variant", "light", "--threads", "1", "--checkpoint-every", "2")
    return data, tmp / "run" / "final"


def test_generate_writes_the_protocol_splits(trained: tuple[Path, Path]) -> None:
    data, _ = trained
    videos = json.loads((data / "videos.json").read_text())
    names = set(videos["videos"])
    assert {"test-clean-w00", "test-noise-w00", "val-clean-w00", "test-segments-w00"} <= names
    assert len(list((data / "images" / "test" / "test-noise-w00").glob("*.png"))) == 6
    assert (data / "panoptic_train.json").is_file()


def test_train_writes_a_loadable_checkpoint_with_its_references(trained: tuple[Path, Path]) -> None:
    from model.checkpoint import load_checkpoint

    _, ckpt = trained
    model = load_checkpoint(ckpt)
    assert model.cfg.recon_loss_reference is not None and model.cfg.recon_loss_reference > 0
    assert model.cfg.swin.in_channels == 4
    ref = model.cfg.input_stats_reference  # the safe-adaptation guard's reference, from the un-augmented stills
    assert ref is not None and len(ref["mean"]) == len(ref["std"]) == 5 and min(ref["std"]) > 0


def test_calibrate_writes_the_reference_into_an_existing_checkpoint(trained: tuple[Path, Path], tmp_path: Path) -> None:
    import shutil

    from model.checkpoint import load_checkpoint, load_config

    data, ckpt = trained
    copy = shutil.copytree(ckpt, tmp_path / "ckpt")
    cfg = load_config(copy)
    cfg.input_stats_reference = None
    (copy / "config.json").write_text(cfg.model_dump_json())
    invoke("calibrate", "--model-dir", str(copy), "--data-root", str(data))
    assert load_checkpoint(copy).cfg.input_stats_reference == load_config(ckpt).input_stats_reference


def test_evaluate_writes_results_json_table_and_curves(trained: tuple[Path, Path], tmp_path: Path) -> None:
    data, ckpt = trained
    out, docs = tmp_path / "out", tmp_path / "docs"
    args = ["evaluate", "--model-dir", str(ckpt), "--data-root", str(data), "--seeds", "2", "--workers", "1",
            "--out-dir", str(out), "--docs-dir", str(docs), "--row", "main_task_only", "--row", "default_preset",
            "--row", "online_k1"]
    for fam in FAMILIES:
        args += ["--family", fam]
    table = invoke(*args)
    assert all(f"| {row} |" in table for row in ("main_task_only", "default_preset", "online_k1", "implicit_only"))

    results = json.loads((docs / "results.json").read_text())
    methods = results["methods"]
    assert set(methods) == {"main_task_only", "default_preset", "online_k1", "implicit_only"}
    for name, method in methods.items():
        assert set(method["families"]) == set(FAMILIES), name
        for fam in FAMILIES:
            cell = method["families"][fam]
            assert 0.0 <= cell["miou"] <= 100.0
            assert cell["pq"] is not None and 0.0 <= cell["pq"] <= 100.0
        assert method["s_per_frame"] > 0
    assert methods["main_task_only"]["ratio_to_main"] == pytest.approx(1.0)
    assert methods["online_k1"]["families"] == methods["implicit_only"]["families"]  # an alias, not a rerun
    assert methods["default_preset"]["runs"] == 2 * len(FAMILIES)  # 2 mask seeds
    assert methods["main_task_only"]["runs"] == len(FAMILIES)  # no masks: one seed is the whole story
    assert (docs / "results.md").read_text().startswith("| method |")
    assert sorted(p.name for p in (docs / "curves").glob("*.png")) == [f"test-{f}-w00.png" for f in sorted(FAMILIES)]

    jobs = sorted((out / "jobs").glob("*.json"))
    stamps = {p: p.stat().st_mtime_ns for p in jobs}
    invoke(*args)  # everything cached: nothing recomputed
    assert {p: p.stat().st_mtime_ns for p in jobs} == stamps
    invoke(*args, "--report-only")
    assert json.loads((out / "results.json").read_text())["methods"]["default_preset"]["runs"] == 2 * len(FAMILIES)
