"""Models by name (model/hub.py): `hf:<repo-id>[@<revision>]` from a local Hugging Face hub cache, offline.

Each test gets a hub cache under tmp_path in the layout huggingface_hub writes (`models--org--name/snapshots/<hash>/`
+ `refs/main`), HF_HUB_OFFLINE=1, and its own user cache for the converted checkpoints."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from tests.prepare.helpers import NAMES, cli, tiny_hf_dir

COMMIT = "0123456789abcdef0123456789abcdef01234567"
TINY = "hf:org/tiny-panoptic"


def _save_named(directory: Path, names: list[str], thing_ids: list[int] | None) -> None:
    from transformers import Mask2FormerForUniversalSegmentation

    from model.config import tiny_config
    from model.hf_config import mask2former_config

    hf_cfg = mask2former_config(tiny_config(class_names=names))
    hf_cfg.backbone_config.num_channels = 3
    hf_cfg.id2label = dict(enumerate(names))
    hf_cfg.label2id = {n: i for i, n in enumerate(names)}
    if thing_ids is not None:
        hf_cfg.thing_class_ids = thing_ids
    torch.manual_seed(2)
    Mask2FormerForUniversalSegmentation(hf_cfg).eval().save_pretrained(directory)


def _snapshot(hub: Path, repo_id: str) -> Path:
    repo = hub / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    return repo / "snapshots" / COMMIT


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory) -> Path:
    hub = tmp_path_factory.mktemp("hf") / "hub"
    tiny_hf_dir(_snapshot(hub, "org/tiny-panoptic"))  # 6 named classes, thing ids 0-2 in its config
    _save_named(_snapshot(hub, "org/tiny-coco-panoptic"), [f"LABEL_{i}" for i in range(133)], None)
    _save_named(_snapshot(hub, "org/odd-panoptic"), [f"part {i}" for i in range(5)], None)
    return hub


@pytest.fixture(autouse=True)
def offline(hub_cache, tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _one_line_error(result, *needles: str) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()  # above it, at most transformers' weight-loading progress bar
    text = lines[-1]
    assert "Traceback" not in result.stderr and [line for line in lines if "error" in line] == [text], lines
    assert text.startswith("error: ")
    for needle in needles:
        assert needle in text
    return text


def test_convert_takes_a_model_by_name(tmp_path):
    out = tmp_path / "out"
    result = cli("convert", TINY, out)
    assert result.exit_code == 0, result.output
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["class_names"] == NAMES and cfg["thing_class_ids"] == [0, 1, 2]
    assert cfg["task"] == "panoptic" and cfg["name"] == "hf-org--tiny-panoptic"
    assert (out / "model.safetensors").is_file()


def test_the_conversion_is_cached_and_reused(offline, monkeypatch):
    from model import hf_import
    from model.hub import resolve_hf_model

    calls = []
    real = hf_import.load_hf_mask2former
    monkeypatch.setattr(hf_import, "load_hf_mask2former", lambda *a, **k: calls.append(a) or real(*a, **k))
    first = resolve_hf_model(TINY)
    assert first == offline / "mask2former-ttt" / "models" / f"org--tiny-panoptic@{COMMIT}"
    assert resolve_hf_model(TINY) == first and resolve_hf_model(f"{TINY}@main") == first
    assert len(calls) == 1
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no temporary folder left behind


def test_info_and_the_service_settings_load_a_model_by_name(monkeypatch):
    from model.checkpoint import load_checkpoint
    from server.settings import Settings

    result = cli("info", "--model-dir", TINY)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["class_names"] == NAMES
    monkeypatch.setenv("M2F_MODEL_PATH", TINY)
    path = Settings().model.path
    assert path.name == f"org--tiny-panoptic@{COMMIT}"
    assert load_checkpoint(path).cfg.class_names == NAMES


def test_prepare_reads_a_model_by_name():
    from mask2former_ttt.model_source import load_model_source

    model, kind = load_model_source(TINY, {"recon": {"variant": "light"}})
    assert kind == "hf" and model.cfg.class_names == NAMES and model.cfg.recon.variant == "light"


def test_a_model_missing_from_the_cache_is_one_line_with_the_fix(tmp_path, monkeypatch):
    fix = "hf download org/missing"
    _one_line_error(cli("convert", "hf:org/missing", tmp_path / "out"), "hf:org/missing", fix)
    _one_line_error(cli("info", "--model-dir", "hf:org/missing"), fix)
    _one_line_error(cli("segment", "in.mp4", "-o", tmp_path / "seg", "--model", "hf:org/missing"), fix)
    monkeypatch.setenv("M2F_MODEL_PATH", "hf:org/missing")
    _one_line_error(cli("serve"), fix)
    assert not (tmp_path / "out").exists()


def test_a_known_label_set_names_the_classes_and_things():
    from model.checkpoint import load_config
    from model.hub import resolve_hf_model

    cfg = load_config(resolve_hf_model("hf:org/tiny-coco-panoptic"))
    assert cfg.class_names[0] == "person" and cfg.class_names[79] == "toothbrush"
    assert cfg.class_names[132] == "rug-merged" and not any(n.startswith("LABEL_") for n in cfg.class_names)
    assert cfg.thing_class_ids == list(range(80)) and cfg.task == "panoptic"


def test_a_panoptic_model_without_things_is_refused_with_the_fix(tmp_path):
    _one_line_error(cli("convert", "hf:org/odd-panoptic", tmp_path / "out"), "thing_class_ids", "--overrides")
    light = '{"recon": {"variant": "light"}}'  # overrides that name no things: refused too
    _one_line_error(cli("convert", "hf:org/odd-panoptic", tmp_path / "o2", "--overrides", light), "thing_class_ids")
    result = cli("convert", "hf:org/odd-panoptic", tmp_path / "out", "--overrides", '{"thing_class_ids": [0]}')
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "out" / "config.json").read_text())["thing_class_ids"] == [0]


def test_label_sets_match_by_name_or_by_placeholder_count():
    from model.label_sets import ADE20K, CITYSCAPES, COCO, COCO_PANOPTIC, match_label_set

    assert [len(s.class_names) for s in (COCO_PANOPTIC, COCO, CITYSCAPES, ADE20K)] == [133, 80, 19, 150]
    assert match_label_set(list(COCO.class_names)) is COCO
    assert match_label_set([n.replace(" ", "_") for n in ADE20K.class_names]) is ADE20K
    assert match_label_set([f"class_{i}" for i in range(19)]) is CITYSCAPES
    assert match_label_set([f"thing {i}" for i in range(80)]) is None
    assert match_label_set(NAMES) is None


def test_a_malformed_name_is_one_line(tmp_path):
    _one_line_error(cli("convert", "hf:no-slash", tmp_path / "out"), "hf:<org>/<name>")
    shutil.rmtree(tmp_path / "out", ignore_errors=True)
