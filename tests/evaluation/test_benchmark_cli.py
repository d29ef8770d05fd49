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
    feat = model.cfg.feature_stats_reference  # feature alignment's: per encoder map, 2 statistics per channel
    channels = [model.cfg.swin.embed_dim * 2**s for s in range(4)]
    assert feat is not None and [len(m) for m in feat["mean"]] == [len(m) for m in feat["std"]] == [2 * c for c in channels]
    assert all(min(s) > 0 for s in feat["std"])
    conf = model.cfg.confidence_reference  # the confidence gate's: θ0's prediction uncertainty on the stills
    assert conf is not None and 0 < conf["median"] < conf["q_high"] < 1


def test_calibrate_writes_the_reference_into_an_existing_checkpoint(trained: tuple[Path, Path], tmp_path: Path) -> None:
    import shutil

    from model.checkpoint import load_checkpoint, load_config

    data, ckpt = trained
    copy = shutil.copytree(ckpt, tmp_path / "ckpt")
    cfg = load_config(copy)
    cfg.input_stats_reference = cfg.feature_stats_reference = cfg.confidence_reference = None
    (copy / "config.json").write_text(cfg.model_dump_json())
    invoke("calibrate", "--model-dir", str(copy), "--data-root", str(data))
    calibrated, trained_cfg = load_checkpoint(copy).cfg, load_config(ckpt)
    assert calibrated.input_stats_reference == trained_cfg.input_stats_reference
    assert calibrated.feature_stats_reference["std"][0] == pytest.approx(trained_cfg.feature_stats_reference["std"][0])
    assert calibrated.confidence_reference == pytest.approx(trained_cfg.confidence_reference)


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


# ---- `m2f-ttt benchmark`: it calls generate / train / evaluate as functions with full argument lists --------------
BUNDLED_TRAIN_CONFIG = Path(__file__).resolve().parents[2] / "model" / "bundled" / "tiny-synth" / "train_config.json"


class _Recorder:
    """Stands in for a command function called by `benchmark`: records the keyword arguments of each call."""

    def __init__(self, real) -> None:
        self.real, self.calls = real, []

    def __call__(self, *args, **kwargs) -> None:
        assert not args, f"{self.real.__name__} called positionally: {args}"
        self.calls.append(kwargs)


def _record_commands(monkeypatch: pytest.MonkeyPatch) -> dict[str, _Recorder]:
    from mask2former_ttt import cli

    recorders = {name: _Recorder(getattr(cli, name)) for name in ("generate", "train", "evaluate")}
    for name, rec in recorders.items():
        monkeypatch.setattr(cli, name, rec)
    return recorders


def _assert_full_call(rec: _Recorder) -> dict:
    """Exactly one call, passing every parameter of the real command (a parameter left out would arrive as typer's
    OptionInfo default, a renamed one would be a TypeError) and no typer placeholder."""
    import inspect

    from typer.models import ParameterInfo

    assert len(rec.calls) == 1, rec.calls
    kwargs = rec.calls[0]
    assert set(kwargs) == set(inspect.signature(rec.real).parameters), rec.real.__name__
    assert not [k for k, v in kwargs.items() if isinstance(v, ParameterInfo)]
    return kwargs


def test_evaluate_scores_the_final_clean_segment_of_return_videos_on_its_own(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    """A return video's last clean frames get their own confusion matrix in each job, and results.json a pooled
    forgetting figure beside the per-frame one."""
    from mask2former_ttt.evaluation.benchmark import final_clean_ranges

    data, ckpt = trained
    out = tmp_path / "out"
    invoke("evaluate", "--model-dir", str(ckpt), "--data-root", str(data), "--seeds", "1", "--workers", "1",
           "--out-dir", str(out), "--row", "main_task_only", "--row", "default_preset", "--family", "return")
    (start, stop), = final_clean_ranges(data, "test", {"test-return-w00": "return"}).values()
    for job in (out / "jobs").glob("*.json"):
        score = json.loads(job.read_text())
        assert score["segment"] == [start, stop]
        assert score["segment_confusion"] is not None and sum(map(sum, score["segment_confusion"])) > 0
    final = json.loads((out / "results.json").read_text())["methods"]["default_preset"]["final_clean"]
    assert final["runs"] == 1 and final["miou_pooled_vs_main"] is not None


def test_benchmark_generates_the_protocol_data_retrains_with_the_bundled_recipe_and_evaluates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec = _record_commands(monkeypatch)
    data, out, docs = tmp_path / "data", tmp_path / "out", tmp_path / "docs"
    invoke("benchmark", "--data-root", str(data), "--retrain", "--train-steps", "7", "--seeds", "3", "--workers", "1",
           "--out-dir", str(out), "--docs-dir", str(docs))

    # generate: the documented protocol data (docs/benchmark/protocol.md: 2000 stills, 200 frames, 3 test and 3
    # val worlds, seed 0), where the user asked, with the user's workers, never overwriting
    assert _assert_full_call(rec["generate"]) == {
        "root": data, "train_stills": 2000, "frames": 200, "test_worlds": 3, "val_worlds": 3, "seed": 0, "workers": 1,
        "overwrite": False, "domain": "street",
    }

    # train: the bundled model's recorded recipe (its train_config.json), on this data, into out/train
    train = _assert_full_call(rec["train"])
    recipe = json.loads(BUNDLED_TRAIN_CONFIG.read_text())
    for key in ("dataset_format", "init", "init_path", "model_preset", "recon_variant", "warmup_steps", "batch_size",
                "lr", "backbone_lr_mult", "grad_clip", "checkpoint_every", "seed"):
        assert train[key] == recipe[key], (key, train[key], recipe[key])
    assert recipe["steps"] == 1500  # the --train-steps default is the bundled recipe's
    assert (train["data_root"], train["out_dir"], train["steps"]) == (data, out / "train", 7)
    assert (train["device"], train["threads"]) == ("auto", None)  # all cores: the recipe's 1 thread was a shared box

    # evaluate: the retrained checkpoint, every standard row, every family, the test split, full videos
    assert _assert_full_call(rec["evaluate"]) == {
        "model_dir": out / "train" / "final", "data_root": data, "split": "test", "rows": None, "families": None,
        "seeds": 3, "workers": 1, "max_frames": None, "out_dir": out, "docs_dir": docs, "report_only": False,
        "shuffle_frames": False, "k": None, "threads": None, "guard": None, "camera_fps": None, "cost_model": None,
    }


def test_benchmark_reuses_existing_data_and_the_bundled_model(
    trained: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, _ = trained
    rec = _record_commands(monkeypatch)
    invoke("benchmark", "--data-root", str(data), "--out-dir", str(tmp_path / "out"))
    assert rec["generate"].calls == [] and rec["train"].calls == []
    ev = _assert_full_call(rec["evaluate"])
    assert ev["model_dir"] is None and ev["data_root"] == data  # evaluate then takes the bundled model
    assert (ev["seeds"], ev["workers"], ev["docs_dir"]) == (2, 2, None)  # the committed docs only when asked


class _Captured(Exception):
    pass


def test_benchmark_hands_the_full_protocol_to_run_benchmark(
    trained: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """benchmark -> the real evaluate -> run_benchmark: all standard rows (k sweep 1 4 16 64), every test video of the
    data root, the seeds and workers given, whole videos, running (not report-only)."""
    import mask2former_ttt.evaluation.benchmark as bench
    from mask2former_ttt.evaluation.benchmark import final_clean_ranges
    from mask2former_ttt.evaluation.protocol import rows_by_name
    from model.checkpoint import bundled_model_dir

    data, _ = trained
    seen: dict = {}

    def fake_run_benchmark(model_dir, root, split, videos, rows, seeds, out_dir, workers=2, max_frames=None,
                           families=None, run=True, threads=None, segments=None):
        seen.update(model_dir=model_dir, root=root, split=split, videos=videos, rows=rows, seeds=seeds,
                    out_dir=out_dir, workers=workers, max_frames=max_frames, families=families, run=run,
                    threads=threads, segments=segments)
        raise _Captured

    monkeypatch.setattr(bench, "run_benchmark", fake_run_benchmark)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["benchmark", "--data-root", str(data), "--out-dir", str(out), "--seeds", "3",
                                      "--workers", "1", "--docs-dir", str(tmp_path / "docs")])
    assert isinstance(result.exception, _Captured), (result.exception, result.output)
    test_videos = sorted(p.name for p in (data / "images" / "test").iterdir())
    assert seen.pop("videos") == test_videos and len(test_videos) >= 2
    assert set(seen.pop("families")) == set(test_videos)
    assert [r.name for r in seen.pop("rows")] == [r.name for r in rows_by_name(None, (1, 4, 16, 64))]
    assert seen.pop("segments") == final_clean_ranges(data, "test", {v: "return" for v in test_videos})
    assert seen == {"model_dir": bundled_model_dir(), "root": data, "split": "test", "seeds": 3, "out_dir": out,
                    "workers": 1, "max_frames": None, "run": True, "threads": None}
