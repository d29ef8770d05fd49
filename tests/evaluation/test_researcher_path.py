"""The researcher's path with their own data (docs/own-data.md): each friction met while bringing an independent dataset,
tested so that reverting its fix fails the test.

- `evaluate` refuses a checkpoint whose classes are not the data's (it used to print mIoU 0.1);
- the label set's source is logged (without meta.json KITTI-STEP videos silently took the 19-class set);
- the table shows every family present, a separator as wide as its header, and per-video scores;
- `--threads` reaches torch in `evaluate` (its workers) and `segment`; `benchmark` takes `--model-dir` and does
  not write the committed docs unless asked;
- `train`'s unset options follow the bundled model's recipe; the checkpoint infers at the size it trained at.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from mask2former_ttt.cli import app
from mask2former_ttt.evaluation.report import aggregate, markdown_table
from mask2former_ttt.evaluation.video_eval import VideoScore

BUNDLED_TRAIN_CONFIG = Path(__file__).resolve().parents[2] / "model" / "bundled" / "tiny-synth" / "train_config.json"
SEVEN = ["soil", "grass", "water", "road", "roof", "tree", "vehicle"]


def invoke(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    assert result.exit_code == code, (result.output, result.exception)
    return result.output


@pytest.fixture(scope="module")
def videos_only(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated tree with one test world of 4-frame videos and no training stills (11 synthetic classes)."""
    data = tmp_path_factory.mktemp("own") / "data"
    invoke("generate", "--root", str(data), "--train-stills", "0", "--frames", "4", "--test-worlds", "1",
           "--val-worlds", "1", "--workers", "1")
    return data


def _relabelled(src: Path, dst: Path, classes: list[str]) -> Path:
    shutil.copytree(src, dst)
    meta = json.loads((dst / "meta.json").read_text())
    meta.update(classes=classes, thing_ids=[len(classes) - 1], stuff_ids=list(range(len(classes) - 1)),
                colors=[[i * 30, 0, 0] for i in range(len(classes))])
    (dst / "meta.json").write_text(json.dumps(meta))
    return dst


def test_evaluate_refuses_the_bundled_model_on_data_with_other_classes(videos_only: Path, tmp_path: Path) -> None:
    data = _relabelled(videos_only, tmp_path / "seven", SEVEN)
    result = CliRunner().invoke(app, ["evaluate", "--data-root", str(data), "--row", "main_task_only", "--seeds", "1",
                                      "--workers", "1", "--out-dir", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "the bundled model (no --model-dir given) predicts 11 classes" in result.output
    assert "7 classes (soil, grass" in result.output and "--model-dir" in result.output
    assert not (tmp_path / "out" / "jobs").exists() or not list((tmp_path / "out" / "jobs").iterdir())


def test_class_check_names_a_reordering(videos_only: Path, tmp_path: Path) -> None:
    from model.checkpoint import bundled_model_dir, load_config
    from mask2former_ttt.evaluation.compat import ClassMismatch, check_model_matches_data

    names = list(load_config(bundled_model_dir()).class_names)
    check_model_matches_data(bundled_model_dir(), videos_only, "test")  # the generator's own classes: accepted
    data = _relabelled(videos_only, tmp_path / "swapped", [names[1], names[0], *names[2:]])
    with pytest.raises(ClassMismatch, match="same names, different order"):
        check_model_matches_data(bundled_model_dir(), data, "test")


def test_kitti_step_videos_without_meta_json_log_the_default_label_set(
    videos_only: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from mask2former_ttt.data.readers import read_label_set

    from mask2former_ttt.data import readers

    readers._ANNOUNCED.clear()  # said once per process and dataset
    data = shutil.copytree(videos_only, tmp_path / "nometa")
    (data / "meta.json").unlink()
    with caplog.at_level(logging.INFO, logger="mask2former_ttt.data.readers"):
        labels = read_label_set(data, split="test")
    assert labels.num_classes == 19
    assert "19 classes" in caplog.text and "kitti-step default label set (no meta.json" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="mask2former_ttt.data.readers"):
        read_label_set(videos_only, split="test")
    assert "11 classes" in caplog.text and "from meta.json" in caplog.text


def _scores(family_of: dict[str, str]) -> list[VideoScore]:
    out = []
    for i, video in enumerate(sorted(family_of)):
        out.append(VideoScore(video, "main_task_only", 0, 50.0 + i, None, None, 0.01))
        out += [VideoScore(video, "online_k16", s, 53.0 + i + s, None, None, 0.03) for s in (0, 1)]
    return out


def test_table_shows_every_family_present_and_per_video_scores() -> None:
    family_of = {"test-cast-w00": "cast", "test-clean-w00": "clean", "seq-0001": "real", "test-haze-w00": "haze"}
    summary = aggregate(_scores(family_of), family_of, ["main_task_only", "online_k16"])
    text = markdown_table(summary)
    head, sep = text.splitlines()[:2]
    for fam in ("cast", "clean", "real", "haze"):
        assert f" {fam} |" in head
    assert head.count("|") == sep.count("|") and set(sep.replace("|", "").strip().split()) == {"---"}
    assert "| seq-0001 | real | 50.0 | 53.5 |" in text  # mean over the two seeds of online_k16
    per_video = summary["methods"]["online_k16"]["videos"]["test-cast-w00"]
    assert per_video["miou_vs_main"] == pytest.approx(3.5) and per_video["runs"] == 2


def test_evaluate_threads_reach_the_workers(videos_only: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mask2former_ttt.evaluation.benchmark as bench

    seen: dict = {}

    def fake_run_jobs(todo, keys, model_dir, root, split, out_dir, workers, threads,  # noqa: ANN001
                      max_frames, segments, camera=None):
        seen["threads"] = threads
        raise RuntimeError("captured")

    monkeypatch.setattr(bench, "_run_jobs", fake_run_jobs)
    result = CliRunner().invoke(app, ["evaluate", "--data-root", str(videos_only), "--row", "main_task_only",
                                      "--seeds", "1", "--workers", "1", "--threads", "3", "--out-dir", str(tmp_path)])
    assert isinstance(result.exception, RuntimeError) and seen == {"threads": 3}


def test_segment_threads_set_torch_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mask2former_ttt.segment as seg

    before = torch.get_num_threads()
    seen: dict = {}

    def fake_segment_video(*args, **kwargs):  # noqa: ANN002, ANN003
        seen["threads"] = torch.get_num_threads()
        raise seg.SegmentError("captured")

    monkeypatch.setattr(seg, "segment_video", fake_segment_video)
    try:
        out = invoke("segment", "missing.mp4", "-o", str(tmp_path / "o"), "--threads", "3", code=2)
    finally:
        torch.set_num_threads(before)
    assert seen == {"threads": 3} and "captured" in out


def test_benchmark_scores_a_given_model_and_leaves_the_docs_alone(
    videos_only: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mask2former_ttt import cli

    calls: list[dict] = []
    monkeypatch.setattr(cli, "evaluate", lambda **kw: calls.append(kw))
    invoke("benchmark", "--data-root", str(videos_only), "--model-dir", str(tmp_path / "ckpt"), "--threads", "2",
           "--out-dir", str(tmp_path / "out"))
    assert calls[0]["model_dir"] == tmp_path / "ckpt" and calls[0]["docs_dir"] is None and calls[0]["threads"] == 2
    out = invoke("benchmark", "--data-root", str(videos_only), "--model-dir", "x", "--retrain", code=2)
    assert "either --model-dir or --retrain" in out


@pytest.mark.parametrize("init", ["scratch", "checkpoint"])
def test_train_unset_options_follow_the_recipe(init: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mask2former_ttt.training.trainer as trainer

    seen = []
    monkeypatch.setattr(trainer, "train", lambda cfg: seen.append(cfg) or tmp_path)
    args = ["train", "--data-root", str(tmp_path), "--out-dir", str(tmp_path / "run"), "--init", init]
    invoke(*args, *(["--init-path", str(tmp_path)] if init != "scratch" else []), "--resize", "96", "120")
    cfg = seen[0]
    assert cfg.resize == (96, 120)
    if init == "scratch":  # the bundled model's recorded recipe
        recipe = json.loads(BUNDLED_TRAIN_CONFIG.read_text())
        for key in ("recon_variant", "steps", "warmup_steps", "batch_size", "lr", "backbone_lr_mult", "grad_clip",
                    "checkpoint_every"):
            assert getattr(cfg, key) == recipe[key], key
    else:  # fine-tuning pretrained weights: 10x lower lr, backbone at a tenth
        assert (cfg.lr, cfg.backbone_lr_mult, cfg.recon_variant) == (1e-4, 0.1, "release")
    invoke("train", "--data-root", str(tmp_path), "--lr", "0.5", "--grad-clip", "0")
    assert (seen[1].lr, seen[1].grad_clip, seen[1].steps) == (0.5, None, 1500)  # given options win


class _Stills:
    def __init__(self, h: int, w: int) -> None:
        self.h, self.w = h, w

    def load(self, i: int):  # noqa: ANN201
        import numpy as np
        from types import SimpleNamespace

        return SimpleNamespace(image=np.zeros((self.h, self.w, 3), np.uint8))


def test_checkpoint_infers_at_the_short_side_it_trained_at(caplog: pytest.LogCaptureFixture) -> None:
    from types import SimpleNamespace

    from mask2former_ttt.training.trainer import match_inference_size

    model = SimpleNamespace(cfg=SimpleNamespace(image_size=128))
    with caplog.at_level(logging.WARNING):
        match_inference_size(model, _Stills(256, 320))  # type: ignore[arg-type]
    assert model.cfg.image_size == 256 and "infer at short side 256 (was 128)" in caplog.text
    match_inference_size(model, _Stills(320, 256))  # type: ignore[arg-type]
    assert model.cfg.image_size == 256
