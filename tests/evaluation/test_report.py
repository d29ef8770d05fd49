"""Aggregation of per-video scores into the table: family means, ratios, aliases and the safe-adaptation summary."""

from __future__ import annotations

import pytest

from mask2former_ttt.evaluation.report import aggregate, markdown_table
from mask2former_ttt.evaluation.video_eval import VideoScore

FAMILY = {"v-clean": "clean", "v-drift": "drift", "v-noise": "noise", "v-fog": "fog"}
MIOU = {  # row -> video -> mIoU
    "main_task_only": {"v-clean": 70.0, "v-drift": 30.0, "v-noise": 50.0, "v-fog": 40.0},
    "online_k16": {"v-clean": 67.0, "v-drift": 36.0, "v-noise": 56.0, "v-fog": 46.0},
    "full_preset": {"v-clean": 69.5, "v-drift": 35.0, "v-noise": 56.0, "v-fog": 46.0},
}
SECONDS = {"main_task_only": 0.05, "online_k16": 0.15, "full_preset": 0.10}


def scores() -> list[VideoScore]:
    out = []
    for row, videos in MIOU.items():
        for video, miou in videos.items():
            for seed in (0,) if row == "main_task_only" else (0, 1):  # Main draws no masks: one seed
                out.append(VideoScore(video, row, seed, miou + seed, pq=None, ap=None, s_per_frame=SECONDS[row]))
    return out


def test_aggregate_family_means_ratio_and_safe_adaptation() -> None:
    summary = aggregate(scores(), FAMILY, list(MIOU))
    main = summary["methods"]["main_task_only"]
    assert main["families"]["clean"]["miou"] == pytest.approx(70.0)
    assert main["families"]["clean"]["runs"] == 1 and main["runs"] == 4
    k16 = summary["methods"]["online_k16"]
    assert k16["families"]["clean"]["miou"] == pytest.approx(67.5)  # mean over the two seeds (67, 68)
    assert k16["families"]["clean"]["miou_vs_main"] == pytest.approx(-2.5)  # paired with Main on the same video
    assert summary["methods"]["online_k16"]["ratio_to_main"] == pytest.approx(3.0)
    safe = summary["safe_adaptation"]
    assert safe["clean_delta"] == pytest.approx({"full_preset": 0.0, "online_k16": -2.5})
    assert safe["headline_gain"] == pytest.approx({"full_preset": 17 / 3 + 0.5, "online_k16": 6.5})
    assert safe["gain_kept"] == pytest.approx((17 / 3 + 0.5) / 6.5)
    table = markdown_table(summary)
    assert "clean 0.00 vs -2.50 mIoU" in table and "(95 % kept)" in table
    assert "| online_k16 | +6.5 (2) | +6.5 (2) | +6.5 (2) | -2.5 (2) |" in table  # paired Δ per family


def test_partial_rows_are_compared_on_their_own_videos() -> None:
    rows = ["main_task_only", "online_k16"]
    partial = [s for s in scores() if s.row == "main_task_only" or s.video in ("v-clean", "v-drift")]
    summary = aggregate(partial, FAMILY, rows)
    k16 = summary["methods"]["online_k16"]
    assert k16["headline_miou"] is None and k16["headline_vs_main"] is None  # noise and fog not covered
    assert k16["families"]["drift"]["miou_vs_main"] == pytest.approx(6.5)


def test_safe_adaptation_absent_without_both_rows() -> None:
    rows = ["main_task_only", "default_preset"]
    summary = aggregate([s for s in scores() if s.row in rows], FAMILY, rows)
    assert summary["safe_adaptation"] is None
    assert "Safe adaptation" not in markdown_table(summary)


def test_forgetting_is_scored_on_the_final_clean_segment_paired_with_main() -> None:
    family = {"v-return": "return"}
    main = VideoScore("v-return", "main_task_only", 0, 60.0, None, None, 0.01, per_frame_miou=[50.0] * 6 + [70.0] * 4)
    k16 = [VideoScore("v-return", "online_k16", s, 60.0, None, None, 0.03,
                      per_frame_miou=[90.0] * 6 + [66.0 + s, 64.0 + s, 66.0 + s, 64.0 + s]) for s in (0, 1)]
    summary = aggregate([main, *k16], family, ["main_task_only", "online_k16"], {"v-return": (6, 10)})
    final = summary["methods"]["online_k16"]["final_clean"]
    assert final["miou"] == pytest.approx(65.5) and final["miou_vs_main"] == pytest.approx(-4.5)
    assert final["videos"] == 1 and final["runs"] == 2
    assert "online_k16 65.5 (-4.50; pooled –)" in markdown_table(summary)  # no segment confusions: no pooled figure
    assert aggregate([main, *k16], family, ["main_task_only", "online_k16"])["methods"]["online_k16"]["final_clean"] is None


def _segment_score(row: str, seed: int, confusion: list[list[int]], per_frame: list[float]) -> VideoScore:
    return VideoScore("v-return", row, seed, 60.0, None, None, 0.01, per_frame_miou=[50.0] * 6 + per_frame,
                      segment=[6, 10], segment_confusion=confusion)


def test_final_clean_segment_pooled_is_one_confusion_matrix_over_the_runs_segment_frames() -> None:
    """Two classes, 100 labelled pixels each over the segment. Per frame, one bad frame costs its own mIoU; pooled,
    the segment's pixels are counted once: a class predicted but absent from the segment's labels scores IoU 0 over
    the pool (1/K), a class the labels do hold only loses its own wrong pixels."""
    family = {"v-return": "return"}
    main = _segment_score("main_task_only", 0, [[100, 0, 0], [0, 100, 0], [0, 0, 0]], [100.0] * 4)
    rows, ranges = ["main_task_only", "online_k16"], {"v-return": (6, 10)}

    def final(*runs: VideoScore) -> dict:
        return aggregate([main, *runs], family, rows, ranges)["methods"]["online_k16"]["final_clean"]

    stray = [[98, 0, 2], [0, 100, 0], [0, 0, 0]]  # 2 pixels of class 2, which the segment lacks
    absent = final(*(_segment_score("online_k16", s, stray, [100.0, 100.0, 100.0, 65.0]) for s in (0, 1)))
    assert absent["miou_vs_main"] == pytest.approx(-8.75)  # per frame: (0 + 0 + 0 - 35) / 4
    assert absent["miou_pooled_vs_main"] == pytest.approx(100 * (98 / 100 + 1 + 0) / 3 - 100)
    confused = [[98, 2, 0], [0, 100, 0], [0, 0, 0]]  # the same 2 pixels sent to class 1, which the segment holds
    present = final(*(_segment_score("online_k16", s, confused, [100.0, 100.0, 100.0, 65.0]) for s in (0, 1)))
    assert present["miou_pooled_vs_main"] == pytest.approx(100 * (98 / 100 + 100 / 102) / 2 - 100)
    ok = [[99, 1, 0], [1, 99, 0], [0, 0, 0]]
    mixed = final(_segment_score("online_k16", 0, ok, [100.0] * 4), _segment_score("online_k16", 1, stray, [100.0] * 4))
    # summed over both runs: class 0 197 of (200 labelled + 198 predicted - 197), class 1 199 of 201, class 2 0 of 2
    assert mixed["miou_pooled_vs_main"] == pytest.approx(100 * (197 / 201 + 199 / 201 + 0) / 3 - 100)


def test_final_clean_segment_pooled_needs_every_run_scored_on_that_segment() -> None:
    family = {"v-return": "return"}
    cm = [[100, 0], [0, 100]]
    main = _segment_score("main_task_only", 0, cm, [100.0] * 4)
    row = _segment_score("online_k16", 0, cm, [100.0] * 4)
    rows = ["main_task_only", "online_k16"]

    def pooled(scores: list[VideoScore], ranges: dict) -> float | None:
        return aggregate(scores, family, rows, ranges)["methods"]["online_k16"]["final_clean"]["miou_pooled_vs_main"]

    assert pooled([main, row], {"v-return": (6, 10)}) == pytest.approx(0.0)
    assert pooled([main, row], {"v-return": (5, 10)}) is None  # scored on another range (e.g. a stale cached job)
    unscored_main = VideoScore("v-return", "main_task_only", 0, 60.0, None, None, 0.01, per_frame_miou=[50.0] * 10)
    assert pooled([unscored_main, row], {"v-return": (6, 10)}) is None
