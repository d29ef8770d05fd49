"""The video meters (torchmetrics mIoU / PQ, pycocotools AP) on hand-built frames, and the PQ area-count speed-up
against torchmetrics' own implementation."""

from __future__ import annotations

import pytest
import torch
from torchmetrics.detection import PanopticQuality
from torchmetrics.functional.detection import _panoptic_quality_common as pq_common

from mask2former_ttt.evaluation.metrics import InstanceMeter, PanopticMeter, SemanticMeter
from mask2former_ttt.evaluation.pq_speedup import fast_color_areas, packed_color_areas

THINGS = [3]
NUM_CLASSES = 4


def scene() -> tuple[torch.Tensor, torch.Tensor]:
    """(16, 16) semantic ids 0/1/3 with two instances of thing class 3; 255 marks a void strip."""
    sem = torch.zeros(16, 16, dtype=torch.long)
    sem[8:] = 1
    inst = torch.zeros(16, 16, dtype=torch.long)
    sem[2:6, 2:6], inst[2:6, 2:6] = 3, 1
    sem[10:14, 9:14], inst[10:14, 9:14] = 3, 2
    sem[:, 15] = 255
    return sem, inst


@pytest.mark.parametrize("shape", [(500, 2), (500, 2, 2)])
def test_packed_color_areas_equals_torchmetrics(shape: tuple[int, ...]) -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randint(-3, 7, shape, generator=g)
    fast, slow = packed_color_areas(x), pq_common._get_color_areas(x)
    assert list(fast) == list(slow)  # same keys in the same (lexicographic) order
    assert all(int(fast[k]) == int(slow[k]) for k in slow)


def test_fast_color_areas_gives_identical_pq_and_restores_the_helper() -> None:
    sem, inst = scene()
    sem = sem.clamp(max=2) + (sem == 3).long()  # categories 0..3, void strip -> 2
    target = torch.stack([sem, inst], -1)[None].repeat(2, 1, 1, 1)
    preds = torch.stack([target[0].roll(3, 0), target[1].roll(1, 1)])
    a = PanopticQuality(things={3}, stuffs={0, 1, 2}, allow_unknown_preds_category=True)
    b = PanopticQuality(things={3}, stuffs={0, 1, 2}, allow_unknown_preds_category=True)
    a.update(preds, target)
    with fast_color_areas():
        b.update(preds, target)
    assert pq_common._get_color_areas is not packed_color_areas
    for state in ("iou_sum", "true_positives", "false_positives", "false_negatives"):
        assert torch.equal(getattr(a, state), getattr(b, state)), state
    assert 0.0 < float(a.compute()) < 1.0


def test_semantic_meter_matches_a_hand_computed_miou() -> None:
    meter = SemanticMeter(num_classes=2)
    target = torch.zeros(4, 4, dtype=torch.long)
    target[2:] = 1
    pred = torch.zeros(4, 4, dtype=torch.long)  # class 0: IoU 8/16, class 1: IoU 0
    assert meter.update(pred, target) == pytest.approx(25.0)
    assert meter.update(target, target) == pytest.approx(100.0)
    # accumulated over both frames: class 0 IoU 16/24, class 1 IoU 8/16
    assert meter.compute() == pytest.approx(100 * (16 / 24 + 8 / 16) / 2)
    assert meter.per_frame == pytest.approx([25.0, 100.0])


def panoptic_prediction(sem: torch.Tensor, inst: torch.Tensor) -> tuple[torch.Tensor, list[dict]]:
    """Ground truth rewritten as a predicted id map + segments_info (void pixels -> background class 0)."""
    id_map = torch.zeros_like(sem)
    segments = []
    keys = torch.unique(torch.stack([sem.clamp(max=NUM_CLASSES - 1), inst], -1).reshape(-1, 2), dim=0).tolist()
    for i, (c, k) in enumerate(keys, start=1):
        id_map[(sem.clamp(max=NUM_CLASSES - 1) == c) & (inst == k)] = i
        segments.append({"id": i, "category_id": c, "isthing": c in THINGS})
    return id_map, segments


def test_panoptic_meter_perfect_and_wrong_category() -> None:
    sem, inst = scene()
    perfect = PanopticMeter(NUM_CLASSES, THINGS)
    perfect.update(*panoptic_prediction(sem, inst), sem, inst)
    assert perfect.compute() == pytest.approx(100.0)
    wrong = PanopticMeter(NUM_CLASSES, THINGS)
    id_map, segments = panoptic_prediction(sem, inst)
    for s in segments:
        if s["category_id"] == 1:
            s["category_id"] = 2  # the whole lower half labelled with a class absent from the ground truth
    wrong.update(id_map, segments, sem, inst)
    assert wrong.compute() < 80.0


def test_instance_meter_ap() -> None:
    sem, inst = scene()
    masks = torch.stack([inst == 1, inst == 2])
    good = InstanceMeter(THINGS)
    good.update(torch.tensor([3, 3]), torch.tensor([0.9, 0.8]), masks, sem, inst)
    assert good.compute() == pytest.approx(100.0)
    shifted = InstanceMeter(THINGS)
    shifted.update(torch.tensor([3, 3]), torch.tensor([0.9, 0.8]), masks.roll(3, dims=2), sem, inst)
    assert shifted.compute() < 50.0
    empty = InstanceMeter(THINGS)
    no_things = torch.zeros(16, 16, dtype=torch.long)
    empty.update(torch.tensor([3]), torch.tensor([0.5]), masks[:1], no_things, torch.zeros_like(no_things))
    assert empty.compute() is None  # AP undefined without ground-truth instances


def test_panoptic_meter_counts_abstentions_as_false_negatives() -> None:
    """Unlabeled prediction pixels do not excuse missed segments (panopticapi semantics, not torchmetrics' void)."""
    sem, inst = scene()
    nothing = PanopticMeter(NUM_CLASSES, THINGS)
    nothing.update(torch.zeros_like(sem), [], sem, inst)  # no segment at all
    assert nothing.compute() == pytest.approx(0.0)
    id_map, segments = panoptic_prediction(sem, inst)
    car = int(id_map[3, 3])  # the segment of instance 1
    id_map[id_map == car] = 0  # abstain on one car
    partial = PanopticMeter(NUM_CLASSES, THINGS)
    partial.update(id_map, [s for s in segments if s["id"] != car], sem, inst)
    # class 3: 1 TP, 1 FN -> PQ 2/3; classes 0 and 1 perfect
    assert partial.compute() == pytest.approx(100 * (1 + 1 + 2 / 3) / 3)
