"""Recording of a camera stream's results to disk, in segments, within a byte budget.

A stream created with `unwatched="record"` writes every result to `<recordings_dir>/<stream id>/`, one folder
per segment of `segment_frames` frames, named by the index of its first frame (`000000000300/`). Each segment
is what `VideoResultWriter` writes for a whole video: `results.jsonl` (segments_info, RLEs or PNG names, the
`ttt` record and timings of every frame), `overlay.mp4`, and the task's PNG folder. A segment is *complete*
once closed (the MP4 is finished); only complete segments are downloadable. When the stream's segments hold
more than `max_bytes`, its oldest complete segments are deleted (a ring buffer: the newest results are kept),
and the count of deleted segments is reported.

All methods except `listing` run on one thread at a time (the stream's pump calls `write` in an executor and
awaits it), so the writer needs no lock; `listing` reads only finished folders and the counters.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from mask2former_ttt.outputs.writer import VideoResultWriter
from server.events import FrameResult, SessionClosed

log = logging.getLogger(__name__)

INCOMPLETE = ".writing"  # marker file inside the segment being written


@dataclass(frozen=True)
class SegmentInfo:
    """One recorded segment: `name` (its folder), first frame index, frame count, bytes on disk, complete?"""

    name: str
    first_frame: int
    frames: int
    bytes: int
    complete: bool


def folder_bytes(path: Path) -> int:
    """Bytes of every file below `path` (0 if it is gone)."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class StreamRecorder:
    """Writes one stream's results as segments below `root`, keeping at most `max_bytes` of them."""

    def __init__(
        self,
        root: Path,
        task: str,
        class_names: Sequence[str],
        thing_class_ids: Sequence[int] = (),
        *,
        segment_frames: int = 300,
        max_bytes: int = 512 * 1024**2,
        fps: float = 25.0,
        class_colors: Sequence[Sequence[int]] | None = None,
    ) -> None:
        if segment_frames < 1:
            raise ValueError(f"segment_frames must be >= 1, got {segment_frames}")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.task = task
        self.class_names = list(class_names)
        self.class_colors = class_colors  # the checkpoint's overlay colours (None: by class name)
        self.thing_class_ids = list(thing_class_ids)
        self.segment_frames = segment_frames
        self.max_bytes = max_bytes
        self.fps = fps
        self.frames_written = 0
        self.segments_deleted = 0
        self._writer: VideoResultWriter | None = None
        self._dir: Path | None = None
        self._first = 0
        self._closed_bytes: dict[str, int] = {}  # complete segments, oldest first (dicts keep insertion order)

    def write(self, fr: FrameResult) -> None:
        """Append one frame's result (a new segment starts every `segment_frames` frames)."""
        if self._writer is not None and self._writer.frames >= self.segment_frames:
            self._finish_segment()
        if self._writer is None:
            self._start_segment(fr.index)
        assert self._writer is not None
        extra = {"frame_id": fr.frame_id, "capture_ts": fr.capture_ts, **fr.step.record()}
        self._writer.write(fr.index, fr.image, fr.step.result, pts_s=fr.pts_s, extra=extra)
        self.frames_written += 1

    async def take(self, delivery: FrameResult | SessionClosed) -> None:
        """The pump's call, off the event loop: write a result, or finish the segment when the session closed (a
        failed camera's last segment becomes downloadable). A failed write is logged; the stream goes on."""
        try:
            if isinstance(delivery, FrameResult):
                await asyncio.to_thread(self.write, delivery)
            else:
                await asyncio.to_thread(self.close)
        except Exception:  # noqa: BLE001
            log.exception("recording failed dir=%s", self.root)

    def status(self) -> dict:
        """What a stream's status shows of its recording."""
        return {"frames": self.frames_written, "segments_deleted": self.segments_deleted}

    def close(self) -> None:
        """Finish the segment being written (idempotent)."""
        if self._writer is not None:
            self._finish_segment()

    def delete_all(self) -> None:
        """Close and remove every segment (the stream was deleted)."""
        self.close()
        shutil.rmtree(self.root, ignore_errors=True)
        self._closed_bytes.clear()

    def listing(self) -> list[SegmentInfo]:
        """Every segment on disk, oldest first; the one being written is listed with `complete=False`."""
        out = []
        for path in sorted(p for p in self.root.iterdir() if p.is_dir() and p.name.isdigit()):
            complete = not (path / INCOMPLETE).exists()
            frames = _count_lines(path / "results.jsonl")
            out.append(SegmentInfo(path.name, int(path.name), frames, folder_bytes(path), complete))
        return out

    def segment_dir(self, name: str) -> Path | None:
        """The folder of complete segment `name`, or None (unknown, still being written, or deleted)."""
        if not name.isdigit():
            return None
        path = self.root / name
        return path if path.is_dir() and not (path / INCOMPLETE).exists() else None

    def _start_segment(self, first_frame: int) -> None:
        self._first = first_frame
        self._dir = self.root / f"{first_frame:012d}"
        self._dir.mkdir(parents=True, exist_ok=True)
        (self._dir / INCOMPLETE).touch()
        self._writer = VideoResultWriter(
            self._dir, self.task, self.class_names, self.thing_class_ids, fps=self.fps, class_colors=self.class_colors
        )

    def _finish_segment(self) -> None:
        assert self._writer is not None and self._dir is not None
        self._writer.close()
        (self._dir / INCOMPLETE).unlink(missing_ok=True)
        self._closed_bytes[self._dir.name] = folder_bytes(self._dir)
        log.info("recording segment done dir=%s frames=%d", self._dir, self._writer.frames)
        self._writer, self._dir = None, None
        self._enforce_budget()

    def _enforce_budget(self) -> None:
        """Delete the oldest complete segments while the complete ones hold more than `max_bytes` (the newest
        segment is always kept, even alone over the budget)."""
        while len(self._closed_bytes) > 1 and sum(self._closed_bytes.values()) > self.max_bytes:
            oldest = next(iter(self._closed_bytes))
            del self._closed_bytes[oldest]
            shutil.rmtree(self.root / oldest, ignore_errors=True)
            self.segments_deleted += 1
            log.info("recording budget: deleted segment dir=%s", self.root / oldest)


def _count_lines(path: Path) -> int:
    try:
        with path.open("rb") as fh:
            return sum(1 for _ in fh)
    except FileNotFoundError:
        return 0
