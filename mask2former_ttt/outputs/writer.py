"""Write a whole video's results to a directory (used by upload jobs and the offline CLI).

Layout of `out_dir`:
- `results.jsonl`: one JSON object per frame: `frame_index`, `pts_s`, `width`, `height`, `segments_info`,
  instance RLEs (`rle`, task instance) or the name of the frame's PNG (`png`), plus the caller's `extra` fields;
- `overlay.mp4`: H.264/yuv420p overlay of every frame at the result size;
- task semantic: `semantic/NNNNNN.png` label maps;
- task panoptic: `panoptic/NNNNNN.png` COCO-panoptic RGB id maps and `panoptic.json` (COCO-panoptic document).
"""

from __future__ import annotations

import json
import logging
from fractions import Fraction
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mask2former_ttt.outputs import coco_panoptic
from mask2former_ttt.outputs.frame import encode_masks, segments_info
from mask2former_ttt.outputs.mp4 import Mp4Writer
from mask2former_ttt.outputs.overlay import overlay

logger = logging.getLogger(__name__)

JSONL = "results.jsonl"
OVERLAY = "overlay.mp4"
PANOPTIC_JSON = "panoptic.json"


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
    ) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.kind = kind
        self.class_names = list(class_names)
        self.thing_class_ids = list(thing_class_ids)
        self.frames = 0
        self._jsonl = (self.out_dir / JSONL).open("w", encoding="utf-8")
        self._mp4 = Mp4Writer(self.out_dir / OVERLAY, fps=fps) if write_overlay else None
        self._png_dir = self.out_dir / kind if kind in ("semantic", "panoptic") else None
        if self._png_dir is not None:
            self._png_dir.mkdir(exist_ok=True)
        self._images: list[dict] = []
        self._annotations: list[dict] = []

    def write(
        self, index: int, image: np.ndarray, result: Any, pts_s: float | None = None, extra: dict | None = None
    ) -> dict:
        """Write frame `index`: `image` (H, W, 3) uint8 RGB, `result` a semantic/instance/panoptic result.

        Returns the JSON record written to `results.jsonl`.
        """
        segs = segments_info(self.kind, result, self.class_names)
        want = ("rle",) if self.kind == "instance" else ("png",)
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
        if "rle" in enc:
            record["rle"] = enc["rle"]
        if "png" in enc and self._png_dir is not None:
            name = f"{index:06d}.png"
            (self._png_dir / name).write_bytes(enc["png"])
            record["png"] = f"{self.kind}/{name}"
            if self.kind == "panoptic":
                self._images.append({"id": index, "file_name": name, "width": int(width), "height": int(height)})
                self._annotations.append(coco_panoptic.annotation(index, name, result.id_map, result.segments_info))
        if extra:
            record.update(extra)
        self._jsonl.write(json.dumps(record, separators=(",", ":")) + "\n")
        if self._mp4 is not None:
            self._mp4.write(overlay(image, self.kind, result, len(self.class_names)))
        self.frames += 1
        return record

    def close(self) -> list[str]:
        """Finish all files; returns their names relative to `out_dir` (PNG folders as `folder/`)."""
        self._jsonl.close()
        names = [JSONL]
        if self._mp4 is not None:
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
