"""`m2f-ttt segment --legend auto|always|never` and `--no-labels`: a small live source's overlay.mp4 is widened by
the legend strip under auto, keeps its size under never; a bad mode is one line and exit 2."""

from __future__ import annotations

from pathlib import Path

import av
import pytest
from typer.testing import CliRunner

from mask2former_ttt.cli import app
from mask2former_ttt.outputs.legend_strip import strip_width
from model.checkpoint import load_config
from tests.server.svc_helpers import build_tiny_checkpoint

SOURCE = ("testsrc=size=176x144:rate=10", "--format", "lavfi")  # QCIF, from FFmpeg's lavfi (no camera, no file)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("legend") / "ckpt")


def _segment(out: Path, ckpt: Path, *options: str) -> object:
    return CliRunner().invoke(app, ["segment", *SOURCE, "-o", str(out), "--model", str(ckpt), "--task", "semantic",
                                    "--method", "main_only", "--max-frames", "2", "--no-progress", *options])


def _size(path: Path) -> tuple[int, int]:
    with av.open(str(path)) as container:
        context = container.streams.video[0].codec_context
        return context.width, context.height


@pytest.mark.parametrize("options, extra", [((), True), (("--legend", "never", "--no-labels"), False)])
def test_the_legend_option_sets_the_overlay_size(tmp_path: Path, ckpt: Path, options: tuple, extra: bool) -> None:
    result = _segment(tmp_path / "out", ckpt, *options)
    assert result.exit_code == 0, result.output
    strip = strip_width(load_config(ckpt).class_names) if extra else 0
    assert _size(tmp_path / "out" / "overlay.mp4") == (176 + strip, 144)


def test_a_bad_legend_mode_is_one_line(tmp_path: Path, ckpt: Path) -> None:
    result = _segment(tmp_path / "out", ckpt, "--legend", "sometimes")
    assert result.exit_code == 2
    assert result.output.strip() == "error: legend must be one of auto, always, never, got 'sometimes'"
