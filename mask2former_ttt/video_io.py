"""Video files with PyAV: `probe` (what is in a file, with clear errors) and `iter_frames` (decoded RGB frames).

Both the offline CLI and the service's upload jobs use these, so a bad file fails the same way everywhere:
`VideoError.kind` names the problem (`not_found`, `not_video`, `no_video_stream`, `corrupt`, `too_long`,
`too_many_frames`, `too_large`, `empty`) and the message says what was found. The frame-count and frame-size
limits are checked twice: on the container's figures (`probe`) and while decoding (`iter_frames`), so a file whose
header lies is stopped as soon as its real stream passes a limit.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

logger = logging.getLogger(__name__)

# Container signatures: a file that starts like one of these but does not open is "corrupt", not "not a video".
_MAGIC: list[tuple[int, bytes, str]] = [
    (4, b"ftyp", "MP4/MOV"),
    (0, b"\x1a\x45\xdf\xa3", "Matroska/WebM"),
    (0, b"RIFF", "AVI"),
    (0, b"FLV", "FLV"),
    (0, b"OggS", "Ogg"),
    (0, b"\x00\x00\x01\xba", "MPEG-PS"),
    (0, b"\x47", "MPEG-TS"),
]
# Demuxers that "open" things that are not videos: still images, and text rendered as ANSI art (FFmpeg's `tty`
# demuxer accepts almost any text file).
_STILL_IMAGE_FORMATS = ("image2",)
_TEXT_FORMATS = ("tty", "bin", "xbin", "adf", "idf")


class VideoError(ValueError):
    """A video file that cannot be used. `kind` is one of
    `not_found | not_video | no_video_stream | corrupt | too_long | too_many_frames | too_large | empty`."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class VideoInfo:
    """What `probe` found: container format, video codec, frame size, frame rate, frame count and duration."""

    container: str
    codec: str
    width: int
    height: int
    fps: float | None
    frames: int
    duration_s: float | None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class VideoFrame:
    """One decoded frame: `rgb` (H, W, 3) uint8, its presentation time in seconds and its index in decode order."""

    index: int
    pts_s: float | None
    rgb: np.ndarray


def _sniff_container(path: Path) -> str | None:
    with path.open("rb") as fh:
        head = fh.read(16)
    for offset, magic, name in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return name
    return None


def _why(exc: BaseException) -> str:
    """FFmpeg's reason without the file path (paths are server-side details)."""
    return getattr(exc, "strerror", None) or str(exc)


def _open(path: Path) -> av.container.InputContainer:
    if not path.is_file():
        raise VideoError("not_found", f"no such file: {path}")
    if path.stat().st_size == 0:
        raise VideoError("empty", "the file is empty (0 bytes)")
    try:
        return av.open(str(path), mode="r")
    except av.FFmpegError as exc:
        looks_like = _sniff_container(path)
        if looks_like:
            raise VideoError(
                "corrupt", f"the file looks like {looks_like} but cannot be parsed (truncated or damaged?): {_why(exc)}"
            ) from exc
        raise VideoError(
            "not_video", f"not a video file: no known container format could read it ({_why(exc)})"
        ) from exc


def _duration_s(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return None


def probe(
    path: str | Path,
    max_duration_s: float | None = None,
    check_decode: bool = True,
    max_frames: int | None = None,
    max_pixels: int | None = None,
) -> VideoInfo:
    """Describe the first video stream of `path`; raise `VideoError` naming the problem when it is unusable.

    The frame count comes from the container when it records one, else from counting video packets (no decoding).
    With `check_decode`, the first frame is decoded so that a file whose headers parse but whose data is damaged
    is reported as `corrupt` before any work is queued. `max_frames` / `max_pixels` (width * height) refuse a
    video over those limits (`too_many_frames` / `too_large`) before anything is decoded.
    """
    path = Path(path)
    container = _open(path)
    try:
        fmt = container.format.name
        names = fmt.split(",")
        if any(n in _STILL_IMAGE_FORMATS or n.endswith("_pipe") for n in names):
            raise VideoError("not_video", f"the file is a still image ({fmt}), not a video")
        if any(n in _TEXT_FORMATS for n in names):
            raise VideoError("not_video", "not a video file: it looks like text")
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            raise VideoError("no_video_stream", f"the file has no video stream (streams found: {', '.join(kinds)})")
        stream = container.streams.video[0]
        codec = stream.codec_context.name if stream.codec_context is not None else "unknown"
        width, height = int(stream.codec_context.width or 0), int(stream.codec_context.height or 0)
        check_pixels(width, height, max_pixels)
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else None
        duration = _duration_s(container, stream)
        if max_duration_s is not None and duration is not None and duration > max_duration_s:
            raise VideoError("too_long", f"the video lasts {duration:.1f} s; the limit is {max_duration_s:.0f} s")
        frames = int(stream.frames or 0)
        if frames == 0:
            frames = _count_packets(container, stream)
        check_frames(frames, max_frames)
        if check_decode:
            _decode_first(path, stream.index)
        if frames == 0 or width == 0 or height == 0:
            raise VideoError("corrupt", f"the video stream ({codec}) has no frames or no frame size")
        if duration is None and fps:
            duration = frames / fps
        if max_duration_s is not None and duration is not None and duration > max_duration_s:
            raise VideoError("too_long", f"the video lasts {duration:.1f} s; the limit is {max_duration_s:.0f} s")
        return VideoInfo(fmt, codec, width, height, fps, frames, duration)
    except av.FFmpegError as exc:
        raise VideoError("corrupt", f"the video cannot be read: {_why(exc)}") from exc
    finally:
        container.close()


def check_pixels(width: int, height: int, max_pixels: int | None) -> None:
    """VideoError `too_large` if a `width` x `height` frame is over `max_pixels` (None: no limit)."""
    if max_pixels is not None and width * height > max_pixels:
        raise VideoError(
            "too_large",
            f"the frames are {width}x{height} = {width * height} pixels; the limit is {max_pixels} pixels per frame",
        )


def check_frames(frames: int, max_frames: int | None) -> None:
    """VideoError `too_many_frames` if `frames` is over `max_frames` (None: no limit)."""
    if max_frames is not None and frames > max_frames:
        raise VideoError("too_many_frames", f"the video has {frames} frames; the limit is {max_frames} frames")


def _count_packets(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> int:
    count = 0
    for packet in container.demux(stream):
        if packet.size:
            count += 1
    container.seek(0)
    return count


def _decode_first(path: Path, stream_index: int) -> None:
    with av.open(str(path)) as container:
        stream = container.streams[stream_index]
        try:
            for _ in container.decode(stream):
                return
        except av.FFmpegError as exc:
            raise VideoError("corrupt", f"the first video frame cannot be decoded: {_why(exc)}") from exc
    raise VideoError("corrupt", "the video stream contains no decodable frame")


def redact_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***`` (for logs and errors)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparsable url>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = f"{user}:***@{host}"
    try:
        if parts.port is not None:
            netloc += f":{parts.port}"
    except ValueError:
        pass
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def scaled_size(width: int, height: int, max_width: int | None) -> tuple[int, int]:
    """(width, height) scaled down (never up) so width <= max_width, keeping the aspect ratio; both even."""
    if max_width is None or width <= max_width:
        w, h = width, height
    else:
        w, h = max_width, round(height * max_width / width)
    return max(2, w - w % 2), max(2, h - h % 2)


def decode_rgb(
    container: av.container.InputContainer,
    max_width: int | None = None,
    max_frames: int | None = None,
    *,
    start: int = 0,
    frame_limit: int | None = None,
    max_pixels: int | None = None,
) -> Iterator[VideoFrame]:
    """Decode the first video stream of an open container as RGB frames (H, W, 3) uint8, scaled to `max_width`.

    FFmpeg errors propagate (callers name them); stops after `max_frames`. Frames before index `start` are decoded
    (the codec needs them) but not converted nor yielded. `frame_limit` / `max_pixels` raise VideoError
    (`too_many_frames` / `too_large`) as soon as the decoded stream passes them, whatever the header said.
    """
    size: tuple[int, int] | None = None
    for index, frame in enumerate(container.decode(container.streams.video[0])):
        if max_frames is not None and index >= max_frames:
            return
        if frame_limit is not None and index >= frame_limit:
            raise VideoError(
                "too_many_frames", f"the video has more than {frame_limit} frames; the limit is {frame_limit} frames"
            )
        check_pixels(frame.width, frame.height, max_pixels)
        if index < start:
            continue
        if size is None:
            size = scaled_size(frame.width, frame.height, max_width)
        rgb = frame.to_ndarray(format="rgb24", width=size[0], height=size[1])
        pts = float(frame.pts * frame.time_base) if frame.pts is not None and frame.time_base else None
        yield VideoFrame(index, pts, rgb)


def iter_frames(
    path: str | Path,
    max_width: int | None = None,
    max_frames: int | None = None,
    *,
    start: int = 0,
    frame_limit: int | None = None,
    max_pixels: int | None = None,
) -> Iterator[VideoFrame]:
    """Decode the first video stream of `path` in order as RGB frames (H, W, 3) uint8.

    `max_width` scales frames down (PyAV's swscale, aspect kept, even sizes); `max_frames` stops early; `start`
    skips the frames before that index (resuming); `frame_limit` / `max_pixels` fail a stream over those limits
    (see `decode_rgb`). Decoding errors surface as `VideoError("corrupt", ...)` naming the frame index.
    """
    path = Path(path)
    container = _open(path)
    index = 0
    try:
        if not container.streams.video:
            raise VideoError("no_video_stream", "the file has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            frames = decode_rgb(
                container, max_width, max_frames, start=start, frame_limit=frame_limit, max_pixels=max_pixels
            )
            for frame in frames:
                index = frame.index + 1
                yield frame
        except av.FFmpegError as exc:
            raise VideoError("corrupt", f"decoding failed at frame {index}: {_why(exc)}") from exc
    finally:
        container.close()


def fps_fraction(fps: float | None, default: int = 25) -> Fraction:
    """A frame rate as the rational PyAV encoders want (denominator <= 1001)."""
    return Fraction(fps).limit_denominator(1001) if fps and fps > 0 else Fraction(default)
