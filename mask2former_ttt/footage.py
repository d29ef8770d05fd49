"""Unlabelled footage for `m2f-ttt prepare` and `m2f-ttt calibrate`: any mix of video files, image folders, glob
patterns and live cameras, read as (3, H, W) uint8 RGB frames evenly subsampled to a frame budget.

A FOOTAGE argument is one of

- a video file (anything PyAV/FFmpeg reads: `.mp4`, `.mkv`, `.avi`, ...; read with `mask2former_ttt.video_io`),
- an image file (`.jpg`, `.jpeg`, `.png`, `.bmp`, `.webp`),
- a folder: every image and video under it, recursively, in name order,
- a glob pattern (`'clips/**/*.mp4'`, quoted so the shell leaves it alone; `**` recurses),
- a live input (`rtsp://host/x`, `http(s)://...`, `/dev/video0`) with a frame count: `rtsp://host/x#frames=200`
  or `--camera-frames 200` for every camera argument; that many frames are read, then the budget is taken from them.

Every input is listed (and videos probed) before anything is decoded, so a missing path, a file that is not a
video or an image, or a folder with no images fails at once with `FootageError` (one line: what and why).
"""

from __future__ import annotations

import glob
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mask2former_ttt.live.sources import source_kind
from mask2former_ttt.video_io import VideoError, iter_frames, probe, redact_url

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".flv", ".ogv", ".3gp")
_FRAMES_FRAGMENT = re.compile(r"#frames=(\d+)$")


class FootageError(ValueError):
    """Footage that cannot be used; the message is one line naming the input and the problem."""


@dataclass(frozen=True)
class Item:
    """One input: `kind` is `image` (1 frame), `video` (`frames` frames) or `camera` (`frames` frames to read)."""

    kind: str
    source: str
    frames: int


def _camera_frames(arg: str, camera_frames: int | None) -> tuple[str, int]:
    match = _FRAMES_FRAGMENT.search(arg)
    url = arg[: match.start()] if match else arg
    count = int(match.group(1)) if match else camera_frames
    if not count:
        raise FootageError(f"{redact_url(url)}: a camera needs a frame count: append #frames=N (e.g. "
                           f"{redact_url(url)}#frames=200) or pass --camera-frames N")
    return url, count


def _video_item(path: Path) -> Item:
    try:
        info = probe(path)
    except VideoError as exc:
        raise FootageError(f"{path}: {exc.message}") from None
    return Item("video", str(path), info.frames)


def _file_item(path: Path) -> Item:
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return Item("image", str(path), 1)
    return _video_item(path)  # any other file must be a video PyAV can read


def _folder_items(folder: Path) -> list[Item]:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.parts))
    usable = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES]
    if not usable:
        raise FootageError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) or videos found in the folder "
                           f"({len(files)} other files)")
    return [_file_item(p) for p in usable]


def list_footage(args: Sequence[str], camera_frames: int | None = None) -> list[Item]:
    """Resolve FOOTAGE arguments into items, in argument order (folders and globs sorted by name)."""
    if not args:
        raise FootageError("no footage given: pass video files, image folders, glob patterns or camera URLs")
    items: list[Item] = []
    for arg in args:
        arg = str(arg)
        if source_kind(_FRAMES_FRAGMENT.sub("", arg)) != "file":
            url, count = _camera_frames(arg, camera_frames)
            items.append(Item("camera", url, count))
            continue
        path = Path(arg).expanduser()
        if path.is_dir():
            items += _folder_items(path)
        elif path.is_file():
            items.append(_file_item(path))
        elif glob.has_magic(arg):
            matches = sorted(Path(m) for m in glob.glob(str(path), recursive=True))
            files = [m for m in matches if m.is_file() and m.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES]
            if not files:
                raise FootageError(f"{arg}: the pattern matches no images or videos")
            items += [_file_item(m) for m in files]
        else:
            raise FootageError(f"{arg}: no such file or folder")
    return items


def _image(path: str) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise FootageError(f"{path}: not a readable image ({exc.__class__.__name__})") from None
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).contiguous()


def _video_frames(item: Item) -> Iterator[torch.Tensor]:
    try:
        for frame in iter_frames(item.source):
            yield torch.from_numpy(frame.rgb).permute(2, 0, 1).contiguous()
    except VideoError as exc:
        raise FootageError(f"{item.source}: {exc.message}") from None


def _camera_frames_of(item: Item) -> Iterator[torch.Tensor]:
    from mask2former_ttt.live.sources import open_live

    try:
        _, frames = open_live(item.source, max_frames=item.frames)
        for frame in frames:
            yield torch.from_numpy(frame.rgb).permute(2, 0, 1).contiguous()
    except VideoError as exc:
        raise FootageError(f"{redact_url(item.source)}: {exc.message}") from None


def _frames_of(item: Item) -> Iterator[torch.Tensor]:
    if item.kind == "image":
        yield _image(item.source)
    elif item.kind == "video":
        yield from _video_frames(item)
    else:
        yield from _camera_frames_of(item)


def pick(total: int, budget: int | None) -> list[int]:
    """Indices of `min(total, budget)` frames evenly spread over `total` (first and last included)."""
    if total <= 0:
        return []
    if budget is None or budget >= total:
        return list(range(total))
    if budget == 1:
        return [0]
    return sorted({round(i * (total - 1) / (budget - 1)) for i in range(budget)})


class Footage:
    """The frames of FOOTAGE arguments, evenly subsampled to `max_frames` over all inputs together.

    `len(footage)` is the number of frames it yields (from the containers' frame counts: a video whose count is
    off yields what it has); iterating decodes the inputs in order, yielding (3, H, W) uint8 RGB tensors."""

    def __init__(self, args: Sequence[str], max_frames: int | None = None, camera_frames: int | None = None) -> None:
        if max_frames is not None and max_frames < 1:
            raise FootageError(f"--max-frames must be at least 1, got {max_frames}")
        self.items = list_footage(args, camera_frames)
        self.total = sum(i.frames for i in self.items)
        if self.total == 0:
            raise FootageError(f"no frames found in {', '.join(map(str, args))}")
        self.indices = pick(self.total, max_frames)

    def __len__(self) -> int:
        return len(self.indices)

    def describe(self) -> str:
        kinds = {k: sum(1 for i in self.items if i.kind == k) for k in ("video", "image", "camera")}
        parts = [f"{n} {k}{'s' if n != 1 else ''}" for k, n in kinds.items() if n]
        return f"{len(self)} of {self.total} frames from {', '.join(parts)}"

    def __iter__(self) -> Iterator[torch.Tensor]:
        wanted = iter(self.indices)
        target = next(wanted, None)
        start = 0
        yielded = 0
        for item in self.items:
            if target is None:
                break
            if target >= start + item.frames:  # nothing wanted from this item: skip without decoding
                start += item.frames
                continue
            for offset, frame in enumerate(_frames_of(item)):
                if offset >= item.frames:
                    break
                while target is not None and target < start + offset:  # a short video: move past what it lacked
                    target = next(wanted, None)
                if target == start + offset:
                    yield frame
                    yielded += 1
                    target = next(wanted, None)
                if target is None or target >= start + item.frames:
                    break
            start += item.frames
            while target is not None and target < start:
                target = next(wanted, None)
        if yielded == 0:
            raise FootageError("no frames could be decoded from the footage")


def read_footage(args: Sequence[str], max_frames: int | None = None, camera_frames: int | None = None) -> list[torch.Tensor]:
    """All frames of `Footage(args, max_frames, camera_frames)` in a list (`FootageError` when there are none)."""
    footage = Footage(args, max_frames, camera_frames)
    frames = list(footage)
    log.info("footage: %s", footage.describe())
    return frames
