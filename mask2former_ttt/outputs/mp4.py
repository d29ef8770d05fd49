"""H.264 MP4 writer with PyAV (libx264 when present, else FFmpeg's default H.264 encoder), yuv420p."""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import numpy as np

logger = logging.getLogger(__name__)

H264_ENCODERS = ("libx264", "h264", "libopenh264")


def h264_encoder() -> str:
    """Name of the first available H.264 encoder; raises RuntimeError when FFmpeg has none."""
    for name in H264_ENCODERS:
        try:
            av.codec.Codec(name, "w")
            return name
        except (av.codec.codec.UnknownCodecError, ValueError):
            continue
    raise RuntimeError(f"no H.264 encoder in this FFmpeg build (tried {', '.join(H264_ENCODERS)})")


class Mp4Writer:
    """Append RGB frames (H, W, 3) uint8 to an H.264/yuv420p MP4.

    The frame size is fixed by the first frame (odd sizes are cropped by one pixel: yuv420p needs even sizes).
    Use as a context manager or call `close()`; frames are timestamped 0, 1, 2, ... at `fps`.
    """

    def __init__(self, path: str | Path, fps: Fraction | float = 25, crf: int = 23, preset: str = "veryfast") -> None:
        self.path = Path(path)
        self.fps = fps if isinstance(fps, Fraction) else Fraction(fps).limit_denominator(1001)
        self.crf = crf
        self.preset = preset
        self.frames = 0
        self._container: av.container.OutputContainer | None = None
        self._stream: av.video.stream.VideoStream | None = None
        self._size: tuple[int, int] | None = None

    def _open(self, height: int, width: int) -> None:
        self._size = (height - height % 2, width - width % 2)
        codec = h264_encoder()
        self._container = av.open(str(self.path), mode="w", format="mp4")
        stream = self._container.add_stream(codec, rate=self.fps)
        stream.width, stream.height = self._size[1], self._size[0]
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": str(self.crf), "preset": self.preset}
        self._stream = stream
        logger.debug("mp4 writer path=%s codec=%s size=%dx%d fps=%s", self.path, codec, width, height, self.fps)

    def write(self, rgb: np.ndarray) -> None:
        """Encode one (H, W, 3) uint8 RGB frame."""
        if self._container is None:
            self._open(rgb.shape[0], rgb.shape[1])
        h, w = self._size
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[:h, :w]), format="rgb24")
        frame.pts = self.frames
        frame.time_base = 1 / self.fps
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and finish the file (idempotent)."""
        if self._container is None:
            return
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        self._container = None

    def __enter__(self) -> "Mp4Writer":
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
