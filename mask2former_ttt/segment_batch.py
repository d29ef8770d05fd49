"""What `m2f-ttt segment` runs, and where: one input or a folder / glob of videos, and a safe output directory.

- A file, URL or camera device is one run whose results go straight into `-o OUT/` (as before).
- A folder runs every video file in it (by suffix, `VIDEO_SUFFIXES`, not recursive) and a glob (`'clips/*.mp4'`,
  quoted so that the shell leaves it alone) every file it matches, both in sorted order; each video's results go
  to `OUT/<video stem>/`. Nothing to run is an error naming the folder / pattern; so are two videos with one stem.
- `OUT` must be missing or empty. `overwrite=True` first deletes a previous segment output there, and only that:
  the files and folders segment writes (`SEGMENT_FILES`, `SEGMENT_PNG_DIRS` holding only `*.png`), directly in
  `OUT` or in its sub-folders (a previous folder / glob run). If `OUT` holds anything else (another file, a symlink,
  a deeper folder) nothing is deleted and the error lists what is unknown.
"""

from __future__ import annotations

import glob
import shutil
from pathlib import Path

from mask2former_ttt.live.sources import source_kind
from mask2former_ttt.outputs.ttt_view import TTT_VIEW_MP4
from mask2former_ttt.outputs.writer import JSONL, OVERLAY, PANOPTIC_JSON
from mask2former_ttt.segment import RUN_JSON, SegmentError

VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".flv",
                            ".wmv", ".y4m"})
SEGMENT_FILES = frozenset({OVERLAY, JSONL, PANOPTIC_JSON, RUN_JSON, TTT_VIEW_MP4})
SEGMENT_PNG_DIRS = frozenset({"panoptic", "semantic"})
GLOB_CHARS = "*?["


def expand_inputs(source: str, input_format: str | None = None) -> list[str] | None:
    """The videos of a folder or glob `source`, sorted; None when `source` is one input (file, URL, device).

    SegmentError names the folder / pattern when it holds / matches no video."""
    if source_kind(source, input_format) != "file":
        return None
    path = Path(source)
    if path.is_dir():
        videos = sorted(str(p) for p in path.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
        if not videos:
            raise SegmentError(f"no video file ({', '.join(sorted(VIDEO_SUFFIXES))}) in the folder {source}")
        return videos
    if not path.exists() and any(c in source for c in GLOB_CHARS):
        videos = sorted(p for p in glob.glob(source) if Path(p).is_file())
        if not videos:
            raise SegmentError(f"no file matches {source!r}")
        return videos
    return None


def plan_runs(
    source: str, out: Path, input_format: str | None = None, overwrite: bool = False
) -> list[tuple[str, Path]]:
    """(input, output directory) of each run, after making sure `out` may be written (see the module docstring).

    With `overwrite`, a previous segment output in `out` is deleted here."""
    videos = expand_inputs(source, input_format)
    runs = [(source, out)] if videos is None else [(v, out / Path(v).stem) for v in videos]
    stems: dict[Path, str] = {}
    for video, target in runs:
        if target in stems:
            raise SegmentError(f"{stems[target]} and {video} would both write to {target}: rename one of them")
        stems[target] = video
    prepare_out_dir(out, overwrite)
    return runs


def prepare_out_dir(out: Path, overwrite: bool) -> None:
    """Accept a missing or empty `out`; with `overwrite`, delete a previous segment output in it; else refuse."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise SegmentError(f"-o {out} exists and is not a directory")
    entries = sorted(out.iterdir()) if out.is_dir() else []
    if not entries:
        return
    if not overwrite:
        names = ", ".join(p.name for p in entries[:5]) + (", ..." if len(entries) > 5 else "")
        raise SegmentError(f"-o {out} is not empty ({names}): choose another directory, or pass --overwrite to "
                           "replace a previous segment output there")
    unknown = _unknown_entries(out, nested=True)
    if unknown:
        listed = ", ".join(str(p) for p in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        raise SegmentError(f"-o {out} holds files segment does not write ({listed}); --overwrite deletes only a "
                           "previous segment output: move them away or choose another directory")
    _delete_outputs(out, nested=True)


def _unknown_entries(directory: Path, nested: bool) -> list[Path]:
    """Entries of `directory` that are not segment outputs (in sub-folders too when `nested`)."""
    unknown: list[Path] = []
    for entry in sorted(directory.iterdir()):
        if entry.is_symlink():
            unknown.append(entry)
        elif entry.is_file() and entry.name in SEGMENT_FILES:
            continue
        elif entry.is_dir() and entry.name in SEGMENT_PNG_DIRS:
            unknown += [p for p in entry.iterdir() if p.is_symlink() or not p.is_file() or p.suffix != ".png"]
        elif entry.is_dir() and nested:
            unknown += _unknown_entries(entry, nested=False)
        else:
            unknown.append(entry)
    return unknown


def _delete_outputs(directory: Path, nested: bool) -> None:
    """Delete the segment outputs of `directory` (checked by `_unknown_entries` first); `directory` stays."""
    for entry in directory.iterdir():
        if entry.is_file() and entry.name in SEGMENT_FILES:
            entry.unlink()
        elif entry.is_dir() and entry.name in SEGMENT_PNG_DIRS:
            shutil.rmtree(entry)
        elif entry.is_dir() and nested:
            _delete_outputs(entry, nested=False)
            entry.rmdir()
