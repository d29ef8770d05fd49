"""End to end: `m2f-ttt segment` on a folder or glob of videos, and the output directory rules (-o must be empty;
`--overwrite` replaces a previous segment output and nothing else)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from mask2former_ttt.cli import app
from tests.server.svc_helpers import build_tiny_checkpoint, make_clip

pytestmark = pytest.mark.e2e
FAST = ("--method", "main_only", "--device", "cpu", "--no-progress")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("segment-batch") / "ckpt")


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with two 3-frame clips (`a.mp4`, `b.mp4`) and a text file that is not a video."""
    folder = tmp_path_factory.mktemp("videos")
    make_clip(folder / "a.mp4", frames=3, width=96)
    shutil.copy(folder / "a.mp4", folder / "b.mp4")
    (folder / "notes.txt").write_text("not a video\n")
    return folder


def run(source: str | Path, out: Path, ckpt: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["segment", str(source), "-o", str(out), "--model", str(ckpt), *FAST, *args],
                              catch_exceptions=False)


def lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def test_folder_segments_each_video_into_its_own_directory(tmp_path: Path, ckpt: Path, videos: Path) -> None:
    out = tmp_path / "out"
    result = run(videos, out, ckpt)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["a", "b"]  # notes.txt is skipped
    for stem in ("a", "b"):
        assert lines(out / stem / "results.jsonl") == 3 and (out / stem / "run.json").is_file()
    assert result.output.count("segmented 3 frames") == 2


def test_glob_segments_the_matching_videos(tmp_path: Path, ckpt: Path, videos: Path) -> None:
    out = tmp_path / "out"
    result = run(videos / "b*.mp4", out, ckpt, "--max-frames", "2")
    assert result.exit_code == 0, result.output
    assert [p.name for p in out.iterdir()] == ["b"] and lines(out / "b" / "results.jsonl") == 2


def test_nothing_to_segment_names_the_folder_or_pattern(tmp_path: Path, ckpt: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run(empty, tmp_path / "o1", ckpt)
    assert result.exit_code == 2 and "no video file" in result.output and str(empty) in result.output, result.output
    pattern = str(tmp_path / "nothing-*.mp4")
    result = run(pattern, tmp_path / "o2", ckpt)
    assert result.exit_code == 2 and f"no file matches {pattern!r}" in result.output, result.output
    assert "Traceback" not in result.output


def test_a_non_empty_output_is_refused_then_replaced_with_overwrite(tmp_path: Path, ckpt: Path, videos: Path) -> None:
    out = tmp_path / "out"
    assert run(videos / "a.mp4", out, ckpt, "--task", "semantic").exit_code == 0
    assert len(list((out / "semantic").iterdir())) == 3

    again = run(videos / "a.mp4", out, ckpt, "--task", "semantic", "--max-frames", "1")
    assert again.exit_code == 2 and f"-o {out} is not empty" in again.output and "--overwrite" in again.output
    assert lines(out / "results.jsonl") == 3  # untouched

    replaced = run(videos / "a.mp4", out, ckpt, "--task", "semantic", "--max-frames", "1", "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    assert lines(out / "results.jsonl") == 1
    assert [p.name for p in (out / "semantic").iterdir()] == ["000000.png"]  # no stale PNGs of the first run


def test_overwrite_never_deletes_other_files(tmp_path: Path, ckpt: Path, videos: Path) -> None:
    out = tmp_path / "out"
    assert run(videos / "a.mp4", out, ckpt, "--task", "semantic", "--max-frames", "2").exit_code == 0
    (out / "my-notes.txt").write_text("keep me\n")
    (out / "semantic" / "keep.jpg").write_bytes(b"\xff\xd8")
    before = sorted(p.relative_to(out) for p in out.rglob("*"))

    result = run(videos / "a.mp4", out, ckpt, "--task", "semantic", "--max-frames", "1", "--overwrite")
    assert result.exit_code == 2, result.output
    assert "holds files segment does not write" in result.output
    assert "my-notes.txt" in result.output and "keep.jpg" in result.output
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before  # nothing deleted


def test_overwrite_rules_without_a_model(tmp_path: Path) -> None:
    """`prepare_out_dir` directly: a previous folder run is cleared; a symlink, a file as -o or a deeper folder are
    refused and nothing is deleted."""
    from mask2former_ttt.segment import SegmentError
    from mask2former_ttt.segment_batch import prepare_out_dir

    out = tmp_path / "out"
    for stem in ("a", "b"):
        (out / stem / "panoptic").mkdir(parents=True)
        (out / stem / "panoptic" / "000000.png").write_bytes(b"png")
        (out / stem / "results.jsonl").write_text("{}\n")
    prepare_out_dir(out, overwrite=True)
    assert list(out.iterdir()) == []

    (out / "results.jsonl").write_text("{}\n")
    (out / "link").symlink_to(tmp_path)
    (out / "a" / "deeper").mkdir(parents=True)
    with pytest.raises(SegmentError, match="holds files segment does not write") as refused:
        prepare_out_dir(out, overwrite=True)
    assert "link" in str(refused.value) and "deeper" in str(refused.value)
    assert (out / "results.jsonl").is_file() and (out / "a" / "deeper").is_dir()

    (tmp_path / "file").write_text("x")
    with pytest.raises(SegmentError, match="is not a directory"):
        prepare_out_dir(tmp_path / "file", overwrite=True)
