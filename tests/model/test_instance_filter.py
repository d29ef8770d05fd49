"""Instance score threshold and minimum area in post-processing (`InstanceFilter`): low-score and tiny / empty
instances are dropped from instance results and panoptic segments."""

from __future__ import annotations

import pytest
import torch

from model.postprocess import InstanceFilter, instance_inference, panoptic_inference, postprocess

K = 3  # classes 0..2, column 3 = no object
SIZE = (16, 16)


def _logits() -> tuple[torch.Tensor, torch.Tensor]:
    """Query 0: confident class 0, big mask (64 px); query 1: confident class 1, 4-px mask; query 2: unsure
    (class 2 at ~0.25), big mask; query 3: confident class 2 with an empty mask."""
    cls = torch.full((4, K + 1), -10.0)
    cls[0, 0] = cls[1, 1] = cls[3, 2] = 10.0
    cls[2] = torch.tensor([0.0, 0.0, 0.0, 0.0])  # uniform over 3 classes + no-object: 0.25 each
    masks = torch.full((4, *SIZE), -10.0)
    masks[0, :8, :8] = 10.0
    masks[1, 12:14, 12:14] = 10.0
    masks[2, 8:, :] = 10.0
    return cls, masks


def test_instance_defaults_keep_every_top_k_pair() -> None:
    cls, masks = _logits()
    result = instance_inference(cls, masks, SIZE, top_k=100)
    assert result.classes.numel() == 4 * K  # every (query, class) pair, however unlikely (official behaviour)


def test_low_score_instances_are_dropped() -> None:
    cls, masks = _logits()
    result = instance_inference(cls, masks, SIZE, top_k=100, score_threshold=0.5)
    assert bool((result.scores >= 0.5).all()) and sorted(result.classes.tolist()) == [0, 1]
    # query 2's 0.25 pairs are gone; query 3's empty mask scores 0 (class score x mean mask probability inside it)


def test_zero_and_below_min_area_instances_are_dropped() -> None:
    cls, masks = _logits()
    result = instance_inference(cls, masks, SIZE, top_k=100, score_threshold=0.5, min_area=5)
    areas = result.masks.flatten(1).sum(1).tolist()
    assert result.classes.tolist() == [0] and areas == [64]  # the 4-px and the empty instance are dropped
    result = instance_inference(cls, masks, SIZE, top_k=100, min_area=1)
    assert int(result.masks.flatten(1).sum(1).min()) >= 1  # no empty mask survives min_area=1


def test_panoptic_drops_small_segments_and_low_scores() -> None:
    cls, masks = _logits()
    full = panoptic_inference(cls, masks, SIZE, thing_class_ids=[0, 1, 2], object_mask_threshold=0.2)
    assert sorted(s["area"] for s in full.segments_info) == [4, 64, 124]  # query 2 gives 4 px to query 1
    kept = panoptic_inference(
        cls, masks, SIZE, thing_class_ids=[0, 1, 2], object_mask_threshold=0.2, score_threshold=0.5, min_area=5
    )
    assert [s["area"] for s in kept.segments_info] == [64]
    assert int((kept.id_map > 0).sum()) == 64  # the dropped segments' pixels are void


def test_postprocess_passes_the_filter_on() -> None:
    cls, masks = _logits()
    result = postprocess(cls, masks, "instance", SIZE, score_threshold=0.5, min_area=5)
    assert result.classes.tolist() == [0]


@pytest.mark.parametrize(("score", "area", "needle"), [(1.5, 0, "score_threshold"), (0.1, -1, "min_area")])
def test_bad_filter_values_are_named(score: float, area: int, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        InstanceFilter(score, area)
