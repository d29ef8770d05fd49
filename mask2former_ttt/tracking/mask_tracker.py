"""Persistent instance ids across a stream's frames, by matching each frame's instances to the previous ones.

Mask2Former answers every frame independently: its instances come back sorted by score and its panoptic segment
ids are consecutive in query order, so the same car gets another id on every frame. Like MinVIS (Huang et al.,
2022), which tracks by matching per-frame queries without any video training, `MaskTracker` links each new
instance to a live track with a one-to-one (Hungarian) assignment; the affinity here is the mask IoU with the
track's last mask (instances of a fast-moving object still overlap between consecutive frames at video rates),
weighted by `class_change_weight` when the class differs. A pair needs IoU ≥ `iou_threshold`; unmatched
instances open new tracks; a track unseen for more than `max_age` frames is forgotten. Ids are positive integers
below 65536 (they fit a 16-bit PNG), not reused while their track lives. Mask2Former often answers one object with
two queries, often a whole mask and a part of it; two instances where one covers more than `duplicate_iou` of the
smaller one's pixels are one object, so the lower-scored one is dropped before matching (instance results only;
panoptic segments never overlap). Measuring the overlap against the smaller mask, not by IoU, is what catches the
parts: with IoU > 0.5 a part stayed, competed with the whole for the track, and caused every remaining ID switch on
the synthetic validation videos (docs/tracking.md).

`apply(result)` rewrites a post-processed result in place of its per-frame ids:

- `InstanceResult`: sets `ids` ((N,) int64 track ids, aligned with `classes` / `scores` / `masks`);
- `PanopticResult`: thing segments get `THING_ID_BASE + track id`, stuff segments `1 + category_id` (one segment
  per stuff class per frame), so every id in `id_map` / `segments_info` is stable over the stream.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from model.postprocess import InstanceResult, PanopticResult

THING_ID_BASE = 1000  # panoptic ids of tracked things; stuff ids are 1 + category_id (< THING_ID_BASE)
MAX_ID = 65535


def overlap_of_smaller(masks: torch.Tensor) -> torch.Tensor:
    """masks (N, H, W) bool -> (N, N): |a ∩ b| / min(|a|, |b|), how much of the smaller mask the other covers."""
    f = masks.flatten(1).float()
    area = f.sum(1)
    return (f @ f.T) / torch.minimum(area.view(-1, 1), area.view(1, -1)).clamp(min=1.0)


def _not_duplicates(masks: torch.Tensor, max_overlap: float) -> torch.Tensor:
    """Indices of masks (N, H, W) bool, best first, whose overlap with every earlier kept mask (the share of the
    smaller of the two that the other covers) is at most max_overlap."""
    overlap = overlap_of_smaller(masks)
    kept: list[int] = []
    for i in range(masks.shape[0]):
        if all(float(overlap[i, j]) <= max_overlap for j in kept):
            kept.append(i)
    return torch.tensor(kept, dtype=torch.int64)


@dataclass
class _Track:
    id: int
    category: int
    mask: torch.Tensor  # (H, W) bool, the last mask seen
    last_seen: int


def mask_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of every pair: a (N, H, W) bool, b (M, H, W) bool -> (N, M) float32."""
    if a.shape[0] == 0 or b.shape[0] == 0:
        return torch.zeros(a.shape[0], b.shape[0])
    fa, fb = a.flatten(1).float(), b.flatten(1).float()
    inter = fa @ fb.T
    union = fa.sum(1, keepdim=True) + fb.sum(1) - inter
    return inter / union.clamp(min=1.0)


@dataclass
class MaskTracker:
    """Per-stream tracker (not thread-safe: one writer per stream, like the adapter it sits beside)."""

    iou_threshold: float = 0.1
    max_age: int = 5
    duplicate_iou: float = 0.5  # share of the smaller mask covered by a better one -> a duplicate
    class_change_weight: float = 1.0  # affinity factor when the class differs (0: a class flip starts a new track)
    _tracks: list[_Track] = field(default_factory=list)
    _next_id: int = 1
    _frame: int = 0

    def state_dict(self) -> dict:
        """Plain tensors / ints (loadable with `torch.load(weights_only=True)`): live tracks and the id counter."""
        return {
            "next_id": self._next_id,
            "frame": self._frame,
            "tracks": [
                {"id": t.id, "category": t.category, "mask": t.mask, "last_seen": t.last_seen} for t in self._tracks
            ],
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue from `state_dict()`: the same tracks, and new ids after every id handed out before."""
        self._next_id, self._frame = int(state["next_id"]), int(state["frame"])
        self._tracks = [
            _Track(int(t["id"]), int(t["category"]), t["mask"].bool(), int(t["last_seen"])) for t in state["tracks"]
        ]

    def reset(self) -> None:
        """Forget every track (a stream reset, a resolution change); ids keep counting up."""
        self._tracks = []

    def assign(self, classes: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Track ids for this frame's instances: classes (N,) int64, masks (N, H, W) bool -> (N,) int64."""
        self._frame += 1
        if self._tracks and self._tracks[0].mask.shape != masks.shape[1:]:
            self.reset()  # the stream changed resolution: masks cannot be compared
        ids = torch.zeros(len(classes), dtype=torch.int64)
        matched: set[int] = set()
        if self._tracks and len(classes):
            prev = torch.stack([t.mask for t in self._tracks])
            iou = mask_iou(masks, prev)
            same = classes.view(-1, 1) == torch.tensor([t.category for t in self._tracks]).view(1, -1)
            score = torch.where(same, iou, iou * self.class_change_weight).numpy()
            rows, cols = linear_sum_assignment(-score)
            for r, c in zip(rows.tolist(), cols.tolist()):
                if score[r, c] >= self.iou_threshold:
                    track = self._tracks[c]
                    track.mask, track.last_seen, track.category = masks[r], self._frame, int(classes[r])
                    ids[r] = track.id
                    matched.add(r)
        for r in range(len(classes)):
            if r not in matched:
                ids[r] = self._new_id()
                self._tracks.append(_Track(int(ids[r]), int(classes[r]), masks[r], self._frame))
        self._tracks = [t for t in self._tracks if self._frame - t.last_seen <= self.max_age]
        return ids

    def _new_id(self) -> int:
        live = {t.id for t in self._tracks}
        while self._next_id in live or self._next_id > MAX_ID:
            self._next_id = 1 if self._next_id > MAX_ID else self._next_id + 1
        self._next_id += 1
        return self._next_id - 1

    def apply(self, result: object) -> object:
        """`result` with stream-persistent ids (see the module docstring); other results pass unchanged."""
        if isinstance(result, InstanceResult):
            masks = result.masks.bool()
            keep = _not_duplicates(masks, self.duplicate_iou)  # masks are sorted by decreasing score
            kept = dataclasses.replace(
                result, classes=result.classes[keep], scores=result.scores[keep], masks=result.masks[keep]
            )
            return dataclasses.replace(kept, ids=self.assign(kept.classes, masks[keep]))
        if isinstance(result, PanopticResult):
            return self._panoptic(result)
        return result

    def _panoptic(self, result: PanopticResult) -> PanopticResult:
        segs = result.segments_info
        things = [s for s in segs if s["isthing"]]
        if things:
            masks = torch.stack([result.id_map == s["id"] for s in things])
        else:
            masks = torch.zeros((0, *result.id_map.shape), dtype=torch.bool)
        track_ids = self.assign(torch.tensor([s["category_id"] for s in things], dtype=torch.int64), masks)
        new_id = {s["id"]: THING_ID_BASE + int(t) for s, t in zip(things, track_ids)}
        new_id.update({s["id"]: 1 + int(s["category_id"]) for s in segs if not s["isthing"]})
        lut = np.zeros(max([0, *new_id]) + 1, dtype=np.int64)
        for old, new in new_id.items():
            lut[old] = new
        id_map = torch.from_numpy(lut[result.id_map.numpy()]).to(result.id_map.dtype)
        info = sorted(({**s, "id": new_id[s["id"]]} for s in segs), key=lambda s: s["id"])
        return PanopticResult(id_map=id_map, segments_info=info)
