"""Video metrics from maintained libraries: mIoU (torchmetrics), PQ (torchmetrics), mask AP (pycocotools)."""

from __future__ import annotations

import contextlib
import io
import logging

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torchmetrics.classification import MulticlassJaccardIndex
from torchmetrics.detection import PanopticQuality
from torchmetrics.functional.detection._panoptic_quality_common import _panoptic_quality_compute
from torchmetrics.functional.classification import multiclass_jaccard_index

from mask2former_ttt.evaluation.pq_speedup import fast_color_areas

log = logging.getLogger(__name__)
IGNORE = 255


class SemanticMeter:
    """mIoU over a video (classes absent from both prediction and ground truth are excluded) plus per-frame mIoU."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.metric = MulticlassJaccardIndex(num_classes=num_classes, ignore_index=IGNORE, average="macro")
        self.per_frame: list[float] = []

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> float:
        """pred, target: (H, W) int64 class ids (target 255 = ignore). Returns this frame's mIoU × 100."""
        pred, target = pred.cpu()[None], target.cpu()[None]
        self.metric.update(pred, target)
        value = 100.0 * float(multiclass_jaccard_index(pred, target, self.num_classes, average="macro", ignore_index=IGNORE))
        self.per_frame.append(value)
        return value

    def compute(self) -> float:
        """The video's mIoU × 100: the mean IoU over the classes present in its labels *or its predictions*, so a
        few stray pixels of a class the video lacks count that class at IoU 0 (1/K of the score). Pool
        `confusion()` over videos (`pooled_miou`) for the dataset-style figure."""
        return 100.0 * float(self.metric.compute())

    def confusion(self) -> list[list[int]]:
        """(K, K) pixel counts accumulated over the video: rows are the label's class, columns the prediction's
        (ignored pixels left out)."""
        return self.metric.confmat.long().tolist()


def pooled_miou(confusions: list[list[list[int]]]) -> float | None:
    """mIoU × 100 of the summed (K, K) confusion matrices (rows: label, columns: prediction), over the classes with
    any label or predicted pixel in the pool: the dataset-style figure of Cityscapes / detectron2's evaluator,
    where stray pixels of a class only count against that class's IoU over the whole pool. None for no matrices."""
    if not confusions:
        return None
    cm = torch.tensor(confusions, dtype=torch.float64).sum(0)
    tp = cm.diagonal()
    union = cm.sum(0) + cm.sum(1) - tp
    valid = union > 0
    return 100.0 * float((tp[valid] / union[valid]).mean()) if bool(valid.any()) else None


class PanopticMeter:
    """PQ over a video with torchmetrics' PanopticQuality (areas counted by `pq_speedup`), scored as COCO's
    panopticapi does.

    Ground-truth void (255) pixels use torchmetrics' void colour. Pixels the prediction leaves unlabeled (no query
    passed the thresholds) get their own category `num_classes + 1` instead: torchmetrics would treat predicted
    void as "ignore" and drop every ground-truth segment a model abstains on from the false negatives, so a model
    that predicts nothing would score NaN instead of 0. PQ is then averaged over the real classes only.
    """

    def __init__(self, num_classes: int, thing_ids: list[int]) -> None:
        things = set(thing_ids)
        self.unlabeled = num_classes + 1
        stuffs = (set(range(num_classes)) - things) | {self.unlabeled}
        self.void = num_classes
        self.metric = PanopticQuality(things=things, stuffs=stuffs, allow_unknown_preds_category=True)

    def _pair(self, category: torch.Tensor, instance: torch.Tensor) -> torch.Tensor:
        return torch.stack([category.long(), instance.long()], dim=-1)[None]

    def update(self, id_map: torch.Tensor, segments_info: list[dict], gt_semantic: torch.Tensor, gt_instance: torch.Tensor) -> None:
        """Prediction: id map (H, W) + segments_info; ground truth: semantic (H, W) (255 = void), instance ids (H, W)."""
        id_map = id_map.cpu().long()
        lut = torch.full((int(id_map.max()) + 1,), self.unlabeled, dtype=torch.long)
        for seg in segments_info:
            lut[seg["id"]] = seg["category_id"]
        category = lut[id_map]
        pred = self._pair(category, torch.where(category == self.unlabeled, 0, id_map))
        gt_cat = gt_semantic.cpu().long().clone()
        gt_cat[gt_cat == IGNORE] = self.void
        target = self._pair(gt_cat, gt_instance.cpu())
        with fast_color_areas():
            self.metric.update(pred, target)

    def compute(self) -> float:
        """PQ × 100 averaged over the real classes seen in prediction or ground truth (NaN if none)."""
        m = self.metric
        keep = [i for c, i in m.cat_id_to_continuous_id.items() if c != self.unlabeled]
        *_, pq_avg, _, _ = _panoptic_quality_compute(
            m.iou_sum[keep], m.true_positives[keep], m.false_positives[keep], m.false_negatives[keep]
        )
        return 100.0 * float(pq_avg)


class InstanceMeter:
    """COCO mask AP (pycocotools) over a video; each frame is one COCO image."""

    def __init__(self, thing_ids: list[int]) -> None:
        self.thing_ids = thing_ids
        self.gt: list[dict] = []
        self.dt: list[dict] = []
        self.images: list[dict] = []

    def update(self, classes: torch.Tensor, scores: torch.Tensor, masks: torch.Tensor, gt_semantic: torch.Tensor, gt_instance: torch.Tensor) -> None:
        """Prediction: (N,) classes, (N,) scores, (N, H, W) bool masks; ground truth: semantic + instance id maps."""
        image_id = len(self.images) + 1
        h, w = gt_semantic.shape
        self.images.append({"id": image_id, "height": int(h), "width": int(w)})
        sem, inst = gt_semantic.cpu().numpy(), gt_instance.cpu().numpy()
        for iid in np.unique(inst[inst > 0]):
            m = inst == iid
            cat = int(np.bincount(sem[m]).argmax())
            if cat not in self.thing_ids:
                continue
            rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
            self.gt.append({"id": len(self.gt) + 1, "image_id": image_id, "category_id": cat, "segmentation": rle,
                            "area": float(m.sum()), "bbox": list(mask_utils.toBbox(rle)), "iscrowd": 0})
        keep = [i for i, c in enumerate(classes.tolist()) if c in self.thing_ids]
        if keep:
            rles = mask_utils.encode(np.asfortranarray(masks[keep].cpu().numpy().transpose(1, 2, 0).astype(np.uint8)))
            for i, rle in zip(keep, rles):
                self.dt.append({"image_id": image_id, "category_id": int(classes[i]), "segmentation": rle, "score": float(scores[i])})

    def compute(self) -> float | None:
        """AP@[.5:.95] × 100, or None when the video has no thing instances."""
        if not self.gt:
            return None
        coco = COCO()
        coco.dataset = {"images": self.images, "annotations": self.gt, "categories": [{"id": c} for c in self.thing_ids]}
        with contextlib.redirect_stdout(io.StringIO()):
            coco.createIndex()
            if not self.dt:
                return 0.0
            det = coco.loadRes(self.dt)
            ev = COCOeval(coco, det, iouType="segm")
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        return 100.0 * max(0.0, float(ev.stats[0]))
