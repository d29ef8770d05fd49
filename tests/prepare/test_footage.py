"""`mask2former_ttt.footage`: videos, image folders, globs and cameras read as (3, H, W) uint8 frames, evenly
subsampled to a budget, with one-line errors for what cannot be used."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mask2former_ttt.footage import Footage, FootageError, pick, read_footage
from tests.prepare.helpers import bikes


def _image(path: Path, value: int, size: tuple[int, int] = (24, 40)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), value, np.uint8)).save(path)
    return path


def test_pick_spreads_the_budget_evenly() -> None:
    assert pick(10, None) == list(range(10))
    assert pick(10, 4) == [0, 3, 6, 9]
    assert pick(3, 10) == [0, 1, 2]
    assert pick(5, 1) == [0]


def test_a_video_is_read_and_subsampled_evenly() -> None:
    footage = Footage([bikes()], max_frames=5)
    assert footage.total == 250 and len(footage) == 5
    frames = list(footage)
    assert len(frames) == 5
    assert all(f.shape == (3, 272, 640) and f.dtype == torch.uint8 for f in frames)
    assert not torch.equal(frames[0], frames[-1])  # spread over the clip, not its first frames


def test_folders_recurse_and_mix_with_videos_and_globs(tmp_path: Path) -> None:
    for i, v in enumerate((10, 20, 30)):
        _image(tmp_path / "shots" / "day" / f"{i}.jpg", v)
    _image(tmp_path / "shots" / "night" / "a.png", 200)
    (tmp_path / "shots" / "notes.txt").write_text("not footage")
    frames = read_footage([str(tmp_path / "shots")])
    assert [int(f.float().mean().round()) for f in frames][-1] == 200 and len(frames) == 4
    glob = read_footage([str(tmp_path / "shots" / "**" / "*.png"), bikes()], max_frames=3)
    assert len(glob) == 3 and glob[0].shape == (3, 24, 40)  # the PNG first, then the clip's spread frames
    assert glob[-1].shape == (3, 272, 640)


@pytest.mark.parametrize("make, expected", [
    (lambda p: p / "missing.mp4", "no such file or folder"),
    (lambda p: (p / "fake.mp4").write_text("hello, I am text") and p / "fake.mp4", "not a video file"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "no images"),
    (lambda p: p / "none-*.jpg", "matches no images or videos"),
    (lambda p: "rtsp://127.0.0.1:9/cam", "needs a frame count"),
])
def test_unusable_footage_is_one_line(tmp_path: Path, make, expected: str) -> None:
    with pytest.raises(FootageError) as err:
        Footage([str(make(tmp_path))])
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_camera_frame_count_comes_from_the_url_or_the_option() -> None:
    from mask2former_ttt.footage import list_footage

    assert list_footage(["rtsp://cam/x#frames=200"])[0].frames == 200
    item = list_footage(["rtsp://cam/x"], camera_frames=50)[0]
    assert (item.kind, item.source, item.frames) == ("camera", "rtsp://cam/x", 50)


def test_a_live_input_reads_its_frame_count_then_takes_the_budget(tmp_path: Path) -> None:
    """A live input (here an MPEG-TS stream over local HTTP) is read for `#frames=N` frames, then subsampled."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    import av

    with av.open(str(tmp_path / "cam.ts"), "w", format="mpegts") as out:
        stream = out.add_stream("mpeg2video", rate=25)
        stream.width, stream.height, stream.pix_fmt = 160, 96, "yuv420p"
        for i in range(30):
            frame = av.VideoFrame.from_ndarray(np.full((96, 160, 3), 8 * i, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a, **k: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        footage = Footage([f"http://127.0.0.1:{server.server_address[1]}/cam.ts#frames=20"], max_frames=5)
        levels = [int(f.float().mean().round()) for f in footage]
    finally:
        server.shutdown()
    assert footage.total == 20 and len(levels) == 5
    assert levels == pytest.approx([0, 40, 80, 112, 152], abs=3)  # frames 0, 5, 10, 14, 19 of the first 20
