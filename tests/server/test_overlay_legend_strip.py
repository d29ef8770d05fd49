"""Overlays explain their colours: a frame too small for an in-frame legend gets a legend strip beside it (the
output grows by the strip), unless `legend="never"`; `labels=False` leaves instances unlabelled."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch

from mask2former_ttt.outputs.legend_strip import strip_width
from mask2former_ttt.outputs.overlay import overlay
from mask2former_ttt.outputs.writer import VideoResultWriter
from model.postprocess import InstanceResult, SemanticResult

NAMES = ["road", "sky", "car", "person"]
COLORS = [[200, 10, 10], [10, 200, 10], [10, 10, 200], [230, 200, 20]]
SMALL = (144, 176)  # QCIF rows x columns: below the in-frame legend's 240 rows


def _labels(height: int, width: int) -> torch.Tensor:
    """road above, sky below, a column of car on the left; no person."""
    labels = torch.zeros(height, width, dtype=torch.int64)
    labels[height // 2:] = 1
    labels[:, : width // 4] = 2
    return labels


def _colours(pixels: np.ndarray) -> set[tuple[int, int, int]]:
    return {tuple(int(v) for v in c) for c in np.unique(pixels.reshape(-1, 3), axis=0)}


def test_auto_adds_a_strip_with_the_frames_class_colours_beside_a_small_frame() -> None:
    h, w = SMALL
    image = np.zeros((h, w, 3), np.uint8)
    out = overlay(image, "semantic", SemanticResult(_labels(h, w)), alpha=1.0, class_names=NAMES, colors=COLORS)
    assert out.shape == (h, w + strip_width(NAMES), 3)
    strip = _colours(out[:, w:])
    present = {tuple(COLORS[c]) for c in (0, 1, 2)}
    assert present <= strip, f"the strip lacks swatches of {present - strip}"
    assert tuple(COLORS[3]) not in strip  # a class absent from the frame is not listed


def test_never_keeps_the_frame_size_and_always_adds_the_strip_to_tall_frames() -> None:
    h, w = SMALL
    result = SemanticResult(_labels(h, w))
    never = overlay(np.zeros((h, w, 3), np.uint8), "semantic", result, class_names=NAMES, colors=COLORS, legend="never")
    assert never.shape == (h, w, 3)
    tall = SemanticResult(_labels(240, 320))
    auto = overlay(np.zeros((240, 320, 3), np.uint8), "semantic", tall, class_names=NAMES, colors=COLORS)
    always = overlay(np.zeros((240, 320, 3), np.uint8), "semantic", tall, class_names=NAMES, colors=COLORS,
                     legend="always")
    assert auto.shape == (240, 320, 3)  # tall enough: the legend is drawn inside
    assert always.shape == (240, 320 + strip_width(NAMES), 3)
    with pytest.raises(ValueError, match="legend must be one of auto, always, never, got 'sometimes'"):
        overlay(np.zeros((h, w, 3), np.uint8), "semantic", result, class_names=NAMES, legend="sometimes")


def test_no_labels_draws_only_the_instance_colour() -> None:
    masks = torch.zeros(1, 128, 160, dtype=torch.bool)
    masks[0, 40:100, 40:120] = True
    result = InstanceResult(torch.tensor([2]), torch.tensor([0.9]), masks)
    image = np.zeros((128, 160, 3), np.uint8)
    kwargs = dict(alpha=1.0, class_names=NAMES, colors=COLORS, legend="never")
    labelled = overlay(image, "instance", result, **kwargs)
    plain = overlay(image, "instance", result, labels=False, **kwargs)
    assert len(_colours(plain)) == 2  # black background and the car's shade: no label box, no text
    assert len(_colours(labelled)) > 2


def _overlay_size(path: Path) -> tuple[int, int]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return stream.codec_context.height, stream.codec_context.width


@pytest.mark.parametrize("legend, extra", [("auto", strip_width(NAMES)), ("never", 0)])
def test_the_overlay_video_grows_by_the_strip(tmp_path: Path, legend: str, extra: int) -> None:
    h, w = SMALL
    writer = VideoResultWriter(tmp_path, "semantic", NAMES, fps=5, class_colors=COLORS, legend=legend)
    for index in range(3):
        writer.write(index, np.full((h, w, 3), 90, np.uint8), SemanticResult(_labels(h, w)))
    assert "overlay.mp4" in writer.close()
    assert _overlay_size(tmp_path / "overlay.mp4") == (h, w + extra)
