"""`m2f-ttt segment --ttt-view`: ttt_view.mp4 beside the results, one [masked | reconstruction | ℓ_s curve] frame
per video frame; `--overwrite` treats it as segment output."""

from __future__ import annotations

from pathlib import Path

import av
import pytest
from typer.testing import CliRunner

from mask2former_ttt.cli import app
from mask2former_ttt.outputs.ttt_view import curve_panel
from tests.server.svc_helpers import build_tiny_checkpoint, make_clip

pytestmark = pytest.mark.e2e
FRAMES = 4


def test_segment_writes_the_ttt_view_video(tmp_path: Path) -> None:
    ckpt = build_tiny_checkpoint(tmp_path / "ckpt")
    clip = make_clip(tmp_path / "clip.mp4", frames=FRAMES, width=160)
    out = tmp_path / "out"
    args = ["segment", str(clip), "-o", str(out), "--model", str(ckpt), "--task", "semantic", "--no-progress"]
    result = CliRunner().invoke(app, [*args, "--ttt-view"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "ttt_view.mp4" in result.output
    with av.open(str(out / "ttt_view.mp4")) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == FRAMES
    h, w3 = frames[0].shape[:2]
    assert (h, w3) == (128, 3 * 224)  # 160x90 at the tiny model's working resolution (short side 128), 3 panels
    assert frames[-1][:, 2 * w3 // 3 :].max() > 100  # the curve panel is drawn on
    again = CliRunner().invoke(app, [*args, "--overwrite"], catch_exceptions=False)  # a previous output: replaced
    assert again.exit_code == 0, again.output
    assert not (out / "ttt_view.mp4").exists()


def test_curve_panel_draws_the_losses() -> None:
    empty = curve_panel([], 64, 96)
    drawn = curve_panel([0.5, 0.4, 0.45, 0.3], 64, 96)
    assert empty.shape == drawn.shape == (64, 96, 3) and not empty.any()
    assert (drawn == (255, 180, 84)).all(axis=2).sum() > 20  # the running mean, in the page's orange
