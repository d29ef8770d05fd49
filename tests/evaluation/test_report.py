"""Aggregation of per-video scores into the table: family means, ratios, aliases and the safe-adaptation summary."""

from __future__ import annotations

import pytest

from mask2former_ttt.evaluation.report import aggregate, markdown_table
from mask2former_ttt.evaluation.video_eval import VideoScore

FAMILY = {"v-clean": "clean", "v-drift": "drift", "v-noise": "noise", "v-fog": "fog"}
MIOU = {  # row -> video -> mIoU
    "main_task_only": {"v-clean": 70.0, "v-drift": 30.0, "v-noise": 50.0, "v-fog": 40.0},
    "online_k16": {"v-clean": 67.0, "v-drift": 36.0, "v-noise": 56.0, "v-fog": 46.0},
    "default_preset": {"v-clean": 69.5, "v-drift": 35.0, "v-noise": 56.0, "v-fog": 46.0},
}
SECONDS = {"main_task_only": 0.05, "online_k16": 0.15, "default_preset": 0.10}


def scores() -> list[VideoScore]:
    out = []
    for row, videos in MIOU.items():
        for video, miou in videos.items():
            for seed in (0, 1):
                out.append(VideoScore(video, row, seed, miou + seed, pq=None, ap=None, s_per_frame=SECONDS[row]))
    return out


def test_aggregate_family_means_ratio_and_safe_adaptation() -> None:
    summary = aggregate(scores(), FAMILY, list(MIOU))
    main = summary["methods"]["main_task_only"]
    assert main["families"]["clean"]["miou"] == pytest.approx(70.5)  # mean over the two seeds
    assert main["families"]["clean"]["runs"] == 2 and main["runs"] == 8
    assert summary["methods"]["online_k16"]["ratio_to_main"] == pytest.approx(3.0)
    safe = summary["safe_adaptation"]
    assert safe["clean_delta"] == pytest.approx({"default_preset": -0.5, "online_k16": -3.0})
    assert safe["headline_gain"] == pytest.approx({"default_preset": 17 / 3, "online_k16": 6.0})
    assert safe["gain_kept"] == pytest.approx(17 / 18)
    table = markdown_table(summary)
    assert "clean -0.50 vs -3.00 mIoU" in table and "(94 % kept)" in table


def test_safe_adaptation_absent_without_both_rows() -> None:
    rows = ["main_task_only", "default_preset"]
    summary = aggregate([s for s in scores() if s.row in rows], FAMILY, rows)
    assert summary["safe_adaptation"] is None
    assert "Safe adaptation" not in markdown_table(summary)
