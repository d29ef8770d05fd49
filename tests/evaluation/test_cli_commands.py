"""`m2f-ttt params`, `info`, `convert` and `train --init hf` through the typer app, on what they print and write.

The detectron2 pickle is made from a random tiny Y-model by inverting the converter's own name rules
(`model.convert_detectron2.detectron2_rules`): these tests check the command's wiring (options, files, errors);
the mapping itself is checked against an independently written detectron2 layout in
tests/model/test_convert_detectron2.py.
"""

from __future__ import annotations

import fractions
import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mask2former_ttt.cli import app
from model.config import preset, tiny_config
from model.weight_transfer import PATCH_EMBED_KEY, UNUSED_ENCODER_PREFIX
from model.ymodel import YModel, build_model, parameter_counts
from tests.random_model import random_model


def run(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    assert result.exit_code == code, (result.output, result.exception)
    return result.output


# ---------------------------------------------------------------------------------------------------------------
# params, info


def test_params_prints_the_tiny_presets_counts() -> None:
    out = run("params", "tiny")
    for variant in ("release", "light"):
        cfg = preset("tiny")
        cfg.recon.variant = variant
        counts = parameter_counts(build_model(cfg))
        row = next(line for line in out.splitlines() if re.search(rf"\btiny\b.*\b{variant}\b", line))
        printed = re.findall(r"(\d+\.\d\d) M", row)
        assert printed == [f"{counts[k] / 1e6:.2f}" for k in ("f", "h", "g", "f+h", "total")], row
    assert "swin-s" not in out  # only the presets asked for


def test_info_prints_the_bundled_models_config() -> None:
    from model.checkpoint import bundled_model_dir

    shown = json.loads(run("info"))
    on_disk = json.loads((bundled_model_dir() / "config.json").read_text())
    assert shown["class_names"] == on_disk["class_names"] and "car" in shown["class_names"]
    assert shown["thing_class_ids"] == on_disk["thing_class_ids"]
    assert shown["task"] == on_disk["task"] and shown["recon"]["variant"] == on_disk["recon"]["variant"]
    assert shown["swin"] == on_disk["swin"] and shown["head"] == on_disk["head"]
    assert shown["recon_loss_reference"] == pytest.approx(on_disk["recon_loss_reference"])


# ---------------------------------------------------------------------------------------------------------------
# convert (detectron2 pickles)


def _d2_state(model: YModel) -> dict[str, np.ndarray]:
    """A MaskFormerTTT-style detectron2 state dict (4-channel patch embed, recon_head) holding `model`'s weights."""
    from model.convert_detectron2 import detectron2_rules, relative_index_checks

    y = {k: v.detach() for k, v in model.state_dict().items()}
    parts: dict[str, dict[int | None, torch.Tensor]] = {}
    for rule in detectron2_rules(model.cfg, with_recon=True):
        parts.setdefault(rule.source, {})[rule.part] = y[rule.target]
    state = {src: (p[None] if None in p else torch.cat([p[0], p[1], p[2]])).numpy() for src, p in parts.items()}
    buffers = dict(model.named_buffers())
    for src, dst in relative_index_checks(model.cfg).items():
        n = model.cfg.swin.window_size**2
        state[src] = buffers[dst].reshape(n, n).numpy()
    state["criterion.empty_weight"] = np.ones(model.cfg.num_classes + 1, np.float32)
    return state


@pytest.fixture(scope="module")
def d2_pickle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, YModel, dict[str, np.ndarray]]:
    """(ckpt.pkl, the model it holds, its detectron2 state); the name hints no task."""
    model = random_model(tiny_config(), seed=3)
    state = _d2_state(model)
    path = tmp_path_factory.mktemp("d2") / "ckpt.pkl"
    with path.open("wb") as fh:
        pickle.dump({"model": state, "__author__": "test"}, fh)
    return path, model, state


def test_convert_writes_the_source_tensors(d2_pickle, tmp_path: Path) -> None:
    from model.checkpoint import load_checkpoint

    pkl, source, state = d2_pickle
    out = run("convert", str(pkl), str(tmp_path / "out"), "--model-preset", "tiny")
    assert "converted" in out
    loaded = load_checkpoint(tmp_path / "out")
    assert loaded.cfg.task == "semantic"  # the preset's: the file name hints none and no --task was given
    got = loaded.state_dict()
    for key, value in source.state_dict().items():
        if not key.startswith(UNUSED_ENCODER_PREFIX):
            assert torch.equal(got[key], value), key
    assert torch.equal(got[PATCH_EMBED_KEY], torch.from_numpy(state["backbone.patch_embed.proj.weight"]))


def test_convert_task_and_overrides_reach_config_json(d2_pickle, tmp_path: Path) -> None:
    pkl, _, _ = d2_pickle
    names = [f"c{i}" for i in range(tiny_config().num_classes)]
    overrides = json.dumps({"class_names": names, "thing_class_ids": [0, 1], "recon": {"variant": "release"}})
    run("convert", str(pkl), str(tmp_path / "out"), "--preset", "tiny", "--task", "panoptic", "--overrides", overrides)
    cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    assert cfg["task"] == "panoptic"
    assert cfg["class_names"] == names and cfg["thing_class_ids"] == [0, 1]


def test_convert_refuses_untrusted_pickles_unless_told(d2_pickle, tmp_path: Path) -> None:
    _, _, state = d2_pickle
    odd = tmp_path / "odd.pkl"  # a container with one object a plain numpy state dict never has
    with odd.open("wb") as fh:
        pickle.dump({"model": state, "scale": fractions.Fraction(1, 3)}, fh)
    out = run("convert", str(odd), str(tmp_path / "refused"), "--preset", "tiny", code=2)
    assert "fractions.Fraction" in out and "--trust-pickle" in out
    assert not (tmp_path / "refused").exists()
    run("convert", str(odd), str(tmp_path / "trusted"), "--preset", "tiny", "--trust-pickle")
    assert (tmp_path / "trusted" / "model.safetensors").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--task", "depth"], "'depth' is not one of semantic, instance, panoptic"),
        (["--overrides", "{not json"], "not valid JSON"),
        (["--overrides", "[1, 2]"], "must be a JSON object"),
        (["--task", "panoptic", "--overrides", '{"task": "semantic"}'], "contradicts"),
        (["--overrides", '{"task": "depth"}'], "cannot convert"),
        (["--preset", "huge"], "unknown model preset 'huge'"),
    ],
)
def test_convert_bad_options_fail_clearly(d2_pickle, tmp_path: Path, args: list[str], message: str) -> None:
    pkl, _, _ = d2_pickle
    out = run("convert", str(pkl), str(tmp_path / "out"), *(["--preset", "tiny"] if "--preset" not in args else []),
              *args, code=2)
    assert message in " ".join(out.split()), out  # rich wraps long messages in a box
    assert not (tmp_path / "out" / "model.safetensors").exists()


# ---------------------------------------------------------------------------------------------------------------
# Hugging Face: convert and train --init hf


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory: pytest.TempPathFactory):
    """A tiny random 3-channel Mask2FormerForUniversalSegmentation with the synthetic data's 11 classes."""
    from transformers import Mask2FormerForUniversalSegmentation

    from mask2former_ttt.data.classes import SYNTHETIC
    from model.hf_config import mask2former_config

    names = list(SYNTHETIC.class_names)
    hf_cfg = mask2former_config(tiny_config(class_names=names))
    hf_cfg.backbone_config.num_channels = 3
    hf_cfg.id2label = dict(enumerate(names))
    hf_cfg.label2id = {n: i for i, n in enumerate(names)}
    hf_cfg.thing_class_ids = list(SYNTHETIC.thing_ids)
    torch.manual_seed(1)
    hf = Mask2FormerForUniversalSegmentation(hf_cfg).eval()
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=g))
    directory = tmp_path_factory.mktemp("hf") / "mask2former-tiny-synth"
    hf.save_pretrained(directory)
    return directory


def _hf_as_ymodel(directory: Path) -> dict[str, torch.Tensor]:
    from model.hf_import import load_hf_mask2former

    return load_hf_mask2former(directory).state_dict()


def test_convert_hf_directory_with_task(hf_dir: Path, tmp_path: Path) -> None:
    from model.checkpoint import load_checkpoint

    run("convert", str(hf_dir), str(tmp_path / "out"), "--task", "instance")
    loaded = load_checkpoint(tmp_path / "out")
    assert loaded.cfg.task == "instance"
    assert torch.equal(loaded.state_dict()["head.class_predictor.weight"], _hf_as_ymodel(hf_dir)["head.class_predictor.weight"])
    out = run("convert", str(hf_dir), str(tmp_path / "bad"), "--trust-pickle", code=2)
    assert "applies to detectron2 checkpoint files" in " ".join(out.split())


def test_train_init_hf_starts_from_the_hf_weights(hf_dir: Path, tmp_path: Path) -> None:
    from mask2former_ttt.data.classes import SYNTHETIC
    from mask2former_ttt.data.generate import generate_dataset
    from model.checkpoint import load_checkpoint

    data = tmp_path / "data"
    generate_dataset(data, n_train_stills=4, stills_per_world=4, n_val_worlds=0, n_test_worlds=0,
                     segments_videos=False, size=(96, 128), workers=1, progress=False)
    lr = 1e-5
    run("train", "--init", "hf", "--init-path", str(hf_dir), "--data-root", str(data), "--out-dir", str(tmp_path / "run"),
        "--steps", "2", "--batch-size", "2", "--lr", str(lr), "--threads", "1", "--checkpoint-every", "2")
    trained = load_checkpoint(tmp_path / "run" / "final")
    assert trained.cfg.class_names == list(SYNTHETIC.class_names)
    assert trained.cfg.name == "hf-mask2former-tiny-synth"
    start = _hf_as_ymodel(hf_dir)
    got = trained.state_dict()
    # Two AdamW steps move a weight by at most a few lr; a model not initialised from the HF one is 0.02+ away.
    fh = [k for k in start if k.startswith(("encoder.", "head.")) and not k.startswith(UNUSED_ENCODER_PREFIX)]
    assert fh
    worst = max(float((got[k].float() - start[k].float()).abs().max()) for k in fh)
    assert worst < 20 * lr, worst
    assert any(not torch.equal(got[k], start[k]) for k in fh)  # and it did train


def test_train_main_task_only_leaves_g_untrained_and_says_so(tmp_path: Path) -> None:
    from mask2former_ttt.data.generate import generate_dataset
    from model.checkpoint import load_checkpoint

    data = tmp_path / "data"
    generate_dataset(data, n_train_stills=4, stills_per_world=4, n_val_worlds=0, n_test_worlds=0,
                     segments_videos=False, size=(96, 128), workers=1, progress=False)
    common = ("--data-root", str(data), "--batch-size", "2", "--threads", "1", "--main-task-only")
    run("train", *common, "--steps", "1", "--out-dir", str(tmp_path / "one"))
    run("train", *common, "--steps", "2", "--out-dir", str(tmp_path / "two"))
    one = load_checkpoint(tmp_path / "one" / "final").state_dict()
    main_only = load_checkpoint(tmp_path / "two" / "final")
    assert main_only.cfg.recon_trained is False
    assert main_only.cfg.recon_loss_reference is None
    g = [k for k in one if k.startswith("recon.")]
    assert g
    # The second step moved h but not g (no ℓ_s): a joint run moves g on every step.
    two = main_only.state_dict()
    assert all(torch.equal(two[k], one[k]) for k in g)
    assert any(not torch.equal(two[k], one[k]) for k in one if k.startswith("head."))
    history = json.loads((tmp_path / "two" / "history.json").read_text())
    assert [h["loss_recon"] for h in history] == [0.0, 0.0]
