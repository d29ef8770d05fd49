"""Per-video mIoU against the pooled (dataset-style) mIoU: a few stray pixels of a class a video lacks cost the
per-video figure 1/K of its value, and the pooled figure only that class's share of the whole pool."""

from __future__ import annotations

import pytest
import torch

from mask2former_ttt.evaluation.metrics import SemanticMeter, pooled_miou
from mask2former_ttt.evaluation.report import aggregate, pooled_delta_table
from mask2former_ttt.evaluation.video_eval import VideoScore

K = 4


def video(label: torch.Tensor, pred: torch.Tensor) -> tuple[float, list[list[int]]]:
    meter = SemanticMeter(K)
    meter.update(pred, label)
    return meter.compute(), meter.confusion()


def two_videos(stray: int) -> list[tuple[float, list[list[int]]]]:
    """Video a: classes 0/1, predicted exactly except `stray` pixels called class 3 (absent from a). Video b: class
    3 over half the frame, predicted exactly."""
    label_a = torch.zeros(40, 40, dtype=torch.long)
    label_a[:, 20:] = 1
    pred_a = label_a.clone()
    pred_a.view(-1)[:stray] = 3
    label_b = torch.zeros(40, 40, dtype=torch.long)
    label_b[20:] = 3
    return [video(label_a, pred_a), video(label_b, label_b.clone())]


def test_confusion_counts_label_rows_and_prediction_columns() -> None:
    (_, cm), _ = two_videos(stray=5)
    assert cm[0][3] == 5 and cm[0][0] == 800 - 5 and cm[1][1] == 800 and sum(map(sum, cm)) == 1600


def test_stray_pixels_of_an_absent_class_cost_per_video_miou_a_class_but_pooled_miou_little() -> None:
    (clean, _), _ = two_videos(stray=0)
    (stray_miou, stray_cm), (_, b_cm) = two_videos(stray=5)
    assert clean == pytest.approx(100.0)
    assert stray_miou < 100.0 * 2 / 3 + 1  # class 3 enters video a's average at IoU 0
    pooled = pooled_miou([stray_cm, b_cm])
    assert 99.0 < pooled < 100.0  # 5 of 1,605 class-3 pixels wrong over the pool
    assert pooled_miou([]) is None


def test_aggregate_reports_pooled_miou_and_its_paired_delta() -> None:
    (_, a_main), (_, b_main) = two_videos(stray=0)
    (a_row_miou, a_row), (_, b_row) = two_videos(stray=5)
    scores = [
        VideoScore("a", "main_task_only", 0, 100.0, None, None, 0.1, confusion=a_main),
        VideoScore("b", "main_task_only", 0, 100.0, None, None, 0.1, confusion=b_main),
        VideoScore("a", "online", 0, a_row_miou, None, None, 0.2, confusion=a_row),
        VideoScore("b", "online", 0, 100.0, None, None, 0.2, confusion=b_row),
    ]
    fam = aggregate(scores, {"a": "noise", "b": "noise"}, ["main_task_only", "online"])["methods"]["online"]["families"]
    assert fam["noise"]["miou_vs_main"] < -15  # the per-video figure: one video lost a third
    assert -1.0 < fam["noise"]["miou_pooled_vs_main"] < 0.0
    assert fam["noise"]["miou_pooled"] == pytest.approx(pooled_miou([a_row, b_row]))
    summary = aggregate(scores, {"a": "noise", "b": "noise"}, ["main_task_only", "online"])
    assert "| online | -0." in pooled_delta_table(summary, ["noise"])
