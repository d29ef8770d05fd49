"""Write a whole video's results to a directory (used by upload jobs and the offline CLI).

Layout of `out_dir`:
- `results.jsonl`: one JSON object per frame: `frame_index`, `pts_s`, `width`, `height`, `segments_info`,
  instance RLEs (`rle`, task instance) or the name of the frame's PNG (`png`), the `encodings` asked for besides
  (`rle` for every task, `polygons`: `outputs.frame.encode_masks`), plus the caller's `extra` fields;
- `overlay.mp4`: H.264/yuv420p overlay of every frame at the result size (wider by a legend strip on frames too
  small for an in-frame legend, unless `legend="never"`: `overlay.overlay`);
- task semantic: `semantic/NNNNNN.png` label maps;
- task panoptic: `panoptic/NNNNNN.png` COCO-panoptic RGB id maps and `panoptic.json` (COCO-panoptic document).

Resumable mode (`resume_from=N`, used by upload jobs): the overlay is written in parts (`.overlay-parts/<first
frame>.mp4`, a new part after each `commit()`) and the panoptic annotations to `.panoptic.jsonl`, so that after a
stop or a crash the first N frames (the last commit) are kept as they are and the job continues at frame N;
anything written after the last commit is dropped. `close()` joins the parts into `overlay.mp4` (a remux: no
re-encoding) and writes `panoptic.json`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from fractions import Fraction
from pathlib import Path
from typing import Any, Sequence

import av
import numpy as np

from mask2former_ttt.outputs import coco_panoptic
from mask2former_ttt.outputs.frame import encode_masks, segments_info
from mask2former_ttt.outputs.legend_strip import check_legend_mode
from mask2former_ttt.outputs.mp4 import Mp4Writer
from mask2former_ttt.outputs.overlay import overlay

logger = logging.getLogger(__name__)

JSONL = "results.jsonl"
OVERLAY = "overlay.mp4"
PANOPTIC_JSON = "panoptic.json"
OVERLAY_PARTS = ".overlay-parts"
PANOPTIC_LINES = ".panoptic.jsonl"
JSONL_ENCODINGS = ("rle", "polygons")  # encodings results.jsonl can carry besides its layout's own


def check_jsonl_encodings(encodings: Sequence[str]) -> tuple[str, ...]:
    """`encodings` without repeats; ValueError naming any that results.jsonl cannot carry."""
    unknown = sorted(set(encodings) - set(JSONL_ENCODINGS))
    if unknown:
        raise ValueError(f"unknown results.jsonl encodings {unknown}; choose from {list(JSONL_ENCODINGS)}")
    return tuple(dict.fromkeys(encodings))


def _keep_lines(path: Path, n: int) -> list[str]:
    """Cut the text file `path` to its first `n` lines (created empty if missing); returns them.
    ValueError if it holds fewer than `n` complete lines (the results on disk do not match the checkpoint)."""
    data = path.read_bytes() if path.is_file() else b""
    lines = data.split(b"\n")[:-1]  # a last line without its newline was cut short: dropped
    if len(lines) < n:
        raise ValueError(f"{path.name} holds {len(lines)} complete lines, fewer than the {n} frames to keep")
    kept = b"".join(line + b"\n" for line in lines[:n])
    if kept != data:
        path.write_bytes(kept)
    return [line.decode("utf-8") for line in lines[:n]]


class PartWriter(Mp4Writer):
    """An overlay part: H.264 without B-frames, so decode order is display order in every part (whatever its
    length) and parts join by shifting timestamps."""

    def _open(self, height: int, width: int) -> None:
        super()._open(height, width)
        if self._stream is not None and self._stream.codec_context.name == "libx264":
            self._stream.options = {**dict(self._stream.options or {}), "bframes": "0"}


def concat_mp4(parts: Sequence[Path], dest: Path) -> int:
    """Join MP4 parts written by `PartWriter` with the same settings into `dest` without re-encoding (packets
    are copied with their timestamps shifted). Returns the number of video packets (= frames) written."""
    packets, offset, last_dts = 0, 0, None
    with av.open(str(dest), mode="w", format="mp4") as out:
        ostream = None
        for part in parts:
            with av.open(str(part)) as inp:
                istream = inp.streams.video[0]
                if ostream is None:
                    ostream = out.add_stream_from_template(istream)
                end = offset
                for packet in inp.demux(istream):
                    if packet.dts is None:  # the demuxer's end-of-stream marker
                        continue
                    if last_dts is not None and packet.dts + offset <= last_dts:  # never for PartWriter parts
                        offset = end = last_dts + 1 - packet.dts
                    packet.pts, packet.dts = packet.pts + offset, packet.dts + offset
                    last_dts = packet.dts
                    end = max(end, packet.pts + (packet.duration or 1))
                    packet.stream = ostream
                    out.mux(packet)
                    packets += 1
                offset = end
    return packets


class VideoResultWriter:
    """Append frames' post-processing results; `close()` finishes the MP4 and the COCO-panoptic JSON."""

    def __init__(
        self,
        out_dir: str | Path,
        kind: str,
        class_names: Sequence[str],
        thing_class_ids: Sequence[int] = (),
        fps: Fraction | float = 25,
        write_overlay: bool = True,
        resume_from: int | None = None,
        class_colors: Sequence[Sequence[int]] | None = None,
        legend: str = "auto",
        labels: bool = True,
        encodings: Sequence[str] = (),
    ) -> None:
        """`resume_from=None`: write afresh. `resume_from=N`: resumable mode (see the module docstring), keeping
        the first N frames already in `out_dir` (ValueError if they are not all there). `class_colors`: (K, 3) RGB
        overlay colours (the checkpoint's `class_colors`; default: by class name, `palette.class_colors`).
        `legend` (auto | always | never) and `labels` (instance labels) style the overlay (`overlay.overlay`).
        `encodings` (of `JSONL_ENCODINGS`) are added to every results.jsonl record."""
        self.encodings = check_jsonl_encodings(encodings)
        self.legend = check_legend_mode(legend)
        self.labels = labels
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.kind = kind
        self.class_names = list(class_names)
        self.class_colors = class_colors
        self.thing_class_ids = list(thing_class_ids)
        self.fps = fps
        self.frames = 0
        self.write_overlay = write_overlay
        self.resumable = resume_from is not None
        self._images: list[dict] = []
        self._annotations: list[dict] = []
        self._panoptic_lines = None
        self._mp4: Mp4Writer | None = None
        if self.resumable:
            self._resume(int(resume_from or 0))
        else:
            self._jsonl = (self.out_dir / JSONL).open("w", encoding="utf-8")
            self._mp4 = Mp4Writer(self.out_dir / OVERLAY, fps=fps) if write_overlay else None
        self._png_dir = self.out_dir / kind if kind in ("semantic", "panoptic") else None
        if self._png_dir is not None:
            self._png_dir.mkdir(exist_ok=True)

    def _resume(self, n: int) -> None:
        """Keep frames [0, n) on disk, drop what was written after them, and append from frame n."""
        _keep_lines(self.out_dir / JSONL, n)
        parts = self.out_dir / OVERLAY_PARTS
        parts.mkdir(exist_ok=True)
        for part in parts.glob("*.mp4"):
            if not part.stem.isdigit() or int(part.stem) >= n:  # begun after the last commit: unfinished
                part.unlink()
        if self.kind == "panoptic":
            for line in _keep_lines(self.out_dir / PANOPTIC_LINES, n):
                entry = json.loads(line)
                self._images.append(entry["image"])
                self._annotations.append(entry["annotation"])
            self._panoptic_lines = (self.out_dir / PANOPTIC_LINES).open("a", encoding="utf-8")
        (self.out_dir / OVERLAY).unlink(missing_ok=True)
        self._jsonl = (self.out_dir / JSONL).open("a", encoding="utf-8")
        self.frames = n

    def write(
        self, index: int, image: np.ndarray, result: Any, pts_s: float | None = None, extra: dict | None = None
    ) -> dict:
        """Write frame `index`: `image` (H, W, 3) uint8 RGB, `result` a semantic/instance/panoptic result.

        Returns the JSON record written to `results.jsonl`.
        """
        segs = segments_info(self.kind, result, self.class_names)
        want = (("rle",) if self.kind == "instance" else ("png",)) + self.encodings
        enc = encode_masks(self.kind, result, want, segs)
        height, width = (
            result.masks.shape[1:]
            if self.kind == "instance"
            else (result.label_map if self.kind == "semantic" else result.id_map).shape
        )
        record: dict[str, Any] = {
            "frame_index": index,
            "pts_s": pts_s,
            "width": int(width),
            "height": int(height),
            "segments_info": segs,
        }
        for name in JSONL_ENCODINGS:
            if name in enc:
                record[name] = enc[name]
        if "png" in enc and self._png_dir is not None:
            name = f"{index:06d}.png"
            (self._png_dir / name).write_bytes(enc["png"])
            record["png"] = f"{self.kind}/{name}"
            if self.kind == "panoptic":
                self._images.append({"id": index, "file_name": name, "width": int(width), "height": int(height)})
                self._annotations.append(coco_panoptic.annotation(index, name, result.id_map, result.segments_info))
                if self._panoptic_lines is not None:
                    entry = {"image": self._images[-1], "annotation": self._annotations[-1]}
                    self._panoptic_lines.write(json.dumps(entry, separators=(",", ":")) + "\n")
        if extra:
            record.update(extra)
        self._jsonl.write(json.dumps(record, separators=(",", ":")) + "\n")
        if self.resumable and self.write_overlay and self._mp4 is None:
            self._mp4 = PartWriter(self.out_dir / OVERLAY_PARTS / f"{self.frames:06d}.mp4", fps=self.fps)
        if self._mp4 is not None:
            self._mp4.write(overlay(image, self.kind, result, class_names=self.class_names, colors=self.class_colors,
                                    legend=self.legend, labels=self.labels))
        self.frames += 1
        return record

    def commit(self) -> int:
        """Resumable mode: make every frame written so far durable (the overlay part is finished, the line files
        are flushed to disk); a later `resume_from` may keep them. Returns the number of frames kept."""
        if self._mp4 is not None and self.resumable:
            self._mp4.close()
            self._mp4 = None
        for fh in (self._jsonl, self._panoptic_lines):
            if fh is not None and not fh.closed:
                fh.flush()
                os.fsync(fh.fileno())
        return self.frames

    def suspend(self) -> int:
        """Resumable mode: `commit()` and release the files without finishing them (the job continues later with
        `resume_from=` the returned frame count)."""
        frames = self.commit()
        for fh in (self._jsonl, self._panoptic_lines):
            if fh is not None:
                fh.close()
        return frames

    def _join_overlay(self) -> bool:
        """Resumable mode: the overlay parts -> `overlay.mp4` (then the parts are removed). True if written."""
        parts_dir = self.out_dir / OVERLAY_PARTS
        parts = sorted(parts_dir.glob("*.mp4"), key=lambda p: int(p.stem))
        written = concat_mp4(parts, self.out_dir / OVERLAY) if parts else 0
        if written != self.frames:
            logger.warning("overlay parts hold %d frames, results %d: %s", written, self.frames, self.out_dir)
        shutil.rmtree(parts_dir, ignore_errors=True)
        return written > 0

    def close(self) -> list[str]:
        """Finish all files; returns their names relative to `out_dir` (PNG folders as `folder/`)."""
        if self.resumable:
            self.commit()
        self._jsonl.close()
        names = [JSONL]
        if self.resumable:
            if self._panoptic_lines is not None:
                self._panoptic_lines.close()
                (self.out_dir / PANOPTIC_LINES).unlink(missing_ok=True)
            if self.write_overlay and self._join_overlay():
                names.append(OVERLAY)
        elif self._mp4 is not None:
            self._mp4.close()
            if self._mp4.frames:
                names.append(OVERLAY)
        if self.kind == "panoptic":
            doc = coco_panoptic.panoptic_json(self._images, self._annotations, self.class_names, self.thing_class_ids)
            (self.out_dir / PANOPTIC_JSON).write_text(json.dumps(doc))
            names.append(PANOPTIC_JSON)
        if self._png_dir is not None:
            names.append(f"{self.kind}/")
        logger.info("results written dir=%s frames=%d files=%s", self.out_dir, self.frames, names)
        return names
