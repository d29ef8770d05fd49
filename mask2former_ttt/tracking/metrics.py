"""Tracking quality against ground truth whose instance ids are track ids (the synthetic videos' `instance` maps).

Each frame, every ground-truth thing is matched to the predicted instance with the highest mask IoU (at least
`iou_threshold`); an **ID switch** is a ground-truth track matched in two consecutive frames to two different
predicted ids. Only things visible (and matched) in consecutive frames count, as in the acceptance criterion.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mask2former_ttt.tracking.mask_tracker import mask_iou


def match_to_ground_truth(
    gt_instance: np.ndarray, pred_ids: Sequence[int], pred_masks: torch.Tensor, iou_threshold: float = 0.5
) -> dict[int, int]:
    """{gt track id: predicted id} for one frame: gt_instance (H, W) int (0 = none), pred_masks (N, H, W) bool."""
    gt_ids = [int(i) for i in np.unique(gt_instance) if i != 0]
    if not gt_ids or len(pred_ids) == 0:
        return {}
    gt = torch.from_numpy(np.stack([gt_instance == i for i in gt_ids]))
    iou = mask_iou(gt, pred_masks.bool())
    best, arg = iou.max(dim=1)
    return {g: int(pred_ids[int(a)]) for g, b, a in zip(gt_ids, best.tolist(), arg.tolist()) if b >= iou_threshold}


def id_switches(per_frame: Sequence[dict[int, int]]) -> dict[str, float]:
    """Count switches over a video's per-frame matches (from `match_to_ground_truth`, in frame order).

    Returns `switches`, `pairs` (ground-truth tracks matched in two consecutive frames), `frames` and
    `switches_per_100_frames`.
    """
    switches = pairs = 0
    for prev, cur in zip(per_frame, per_frame[1:]):
        for gt, pred in cur.items():
            if gt in prev:
                pairs += 1
                switches += int(prev[gt] != pred)
    frames = len(per_frame)
    return {
        "switches": switches,
        "pairs": pairs,
        "frames": frames,
        "switches_per_100_frames": 100.0 * switches / max(frames, 1),
    }
