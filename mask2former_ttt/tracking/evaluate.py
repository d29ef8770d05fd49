"""ID switches of per-frame ids vs `MaskTracker` ids on one labelled video whose instance maps are track ids."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from model.postprocess import DEFAULT_MIN_AREA, DEFAULT_SCORE_THRESHOLD, InstanceFilter
from mask2former_ttt.tracking.mask_tracker import MaskTracker
from mask2former_ttt.tracking.metrics import id_switches, match_to_ground_truth
from mask2former_ttt.ttt.frame_step import step_frame
from mask2former_ttt.ttt.protocol import Adapter


def track_video(adapter: Adapter, frames: Iterable, keep: InstanceFilter | None = None) -> dict[str, dict]:
    """Run `adapter` on `frames` (objects with `image` (H, W, 3) uint8 and `instance` (H, W) track ids, like the
    synthetic videos' frames), keeping the instances `keep` passes (default: the service's defaults); returns
    `{"per_frame_ids": id_switches(...), "tracked": id_switches(...)}`."""
    keep = keep or InstanceFilter(DEFAULT_SCORE_THRESHOLD, DEFAULT_MIN_AREA)
    tracker, raw, tracked = MaskTracker(), [], []
    for f in frames:
        result = step_frame(adapter, torch.from_numpy(f.image).permute(2, 0, 1), "instance", instance_filter=keep).result
        raw.append(match_to_ground_truth(f.instance, list(range(1, len(result.classes) + 1)), result.masks))
        out = tracker.apply(result)
        tracked.append(match_to_ground_truth(f.instance, out.ids.tolist(), out.masks))
    return {"per_frame_ids": id_switches(raw), "tracked": id_switches(tracked)}
