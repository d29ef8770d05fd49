"""What `Client.stream` can send: a video file, a camera (index or device path), a stream URL (RTSP, ...), or
frames the caller already has (JPEG/PNG bytes or RGB arrays). Everything becomes JPEG/PNG bytes."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Union

import numpy as np

from mask2former_ttt.video_io import VideoError

from .errors import SourceError
from .wire import to_jpeg

Source = Union[str, Path, int, Iterable[Union[bytes, np.ndarray]]]
IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")


def source_name(source: Source) -> str:
    """A short description for messages (camera index -> device path)."""
    if isinstance(source, int):
        return f"/dev/video{source}"
    if isinstance(source, (str, Path)):
        return str(source)
    return "frames"


def iter_images(source: Source, max_width: int | None = None, max_frames: int | None = None) -> Iterator[bytes]:
    """JPEG/PNG bytes of each frame of `source`, scaled down to at most `max_width` pixels wide (decoded sources
    only), at most `max_frames` of them. Files, devices and URLs are decoded with PyAV
    (`mask2former_ttt.live.sources.open_source`: live inputs reconnect). Raises `SourceError` if it cannot be read."""
    if isinstance(source, (str, Path, int)):
        yield from _decoded(source_name(source), max_width, max_frames)
        return
    for i, item in enumerate(source):
        if max_frames is not None and i >= max_frames:
            return
        if isinstance(item, (bytes, bytearray)):
            if not bytes(item[:8]).startswith(IMAGE_MAGIC):
                raise SourceError("bad_frame", f"frame {i} is bytes but neither JPEG nor PNG")
            yield bytes(item)
        else:
            yield to_jpeg(np.asarray(item))


def _decoded(name: str, max_width: int | None, max_frames: int | None) -> Iterator[bytes]:
    from mask2former_ttt.live.sources import open_source

    try:
        _, frames = open_source(name, max_width=max_width, max_frames=max_frames)
        for frame in frames:
            yield to_jpeg(frame.rgb)
    except VideoError as exc:
        raise SourceError(exc.kind, f"cannot read {name}: {exc.message}") from exc
