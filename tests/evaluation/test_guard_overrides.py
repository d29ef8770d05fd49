"""`m2f-ttt evaluate --guard FIELD=VALUE`: the safe-adaptation guard's settings on every guarded row, validated
before any job runs, and the per-frame shift scores and step scales each job records."""

from __future__ import annotations

import copy

import pytest
import torch

from mask2former_ttt.evaluation.protocol import parse_guard_overrides, rows_by_name, with_guard
from mask2former_ttt.ttt.config import ttt_preset


def test_guard_overrides_parse_json_and_plain_values() -> None:
    assert parse_guard_overrides(["shift_gate=[1.0, 1.6]", "confidence_gate=null", "anchor=0.02"]) == {
        "shift_gate": [1.0, 1.6], "confidence_gate": None, "anchor": 0.02}
    assert parse_guard_overrides(["optimizer=adamw", "lr=1e-4"]) == {"optimizer": "adamw", "lr": 1e-4}
    with pytest.raises(ValueError, match="'window' is not a guard or step field"):
        parse_guard_overrides(["window=4"])
    with pytest.raises(ValueError, match="expected FIELD=VALUE"):
        parse_guard_overrides(["shift_gate"])


def test_guard_overrides_reach_guarded_rows_only_and_are_validated() -> None:
    rows = with_guard(rows_by_name(["main_task_only", "online_k16", "default_preset", "full_preset"]),
                      {"feature_align": 0.1, "shift_gate": [1.0, 1.6]})
    resolved = {r.name: ttt_preset(r.preset, **r.overrides) for r in rows}
    for name in ("default_preset", "full_preset"):
        assert (resolved[name].guard.feature_align, resolved[name].guard.shift_gate) == (0.1, (1.0, 1.6))
    assert resolved["default_preset"].guard.predict_ema == 0.9  # the preset's other guard settings are kept
    for name in ("main_task_only", "online_k16"):  # the paper's rows stay unguarded
        assert resolved[name].guard is None
    with pytest.raises(ValueError, match="anchor"):
        with_guard(rows_by_name(["default_preset"]), {"anchor": 2.0})


def test_each_job_records_per_frame_shift_scores_and_step_scales(tiny_model) -> None:
    from mask2former_ttt.evaluation.protocol import Row
    from mask2former_ttt.evaluation.video_eval import LabelledFrame, evaluate_video
    from mask2former_ttt.ttt.frames import to_working_resolution
    from mask2former_ttt.ttt.shift_score import reference_statistics

    g = torch.Generator().manual_seed(0)
    clean = (torch.rand(3, 64, 80, generator=g) * 60 + 100).to(torch.uint8)
    model = copy.deepcopy(tiny_model)
    ref = reference_statistics(to_working_resolution(f, model.cfg.image_size) for f in (clean, clean.flip(-1)))
    model.cfg.input_stats_reference = {**ref, "std": [max(s, 0.02) for s in ref["std"]]}
    shifted = (clean.float() * 0.3 + 170).to(torch.uint8)  # fog-like: bright, low contrast
    frames = [LabelledFrame(f, torch.zeros(64, 80, dtype=torch.long), torch.zeros(64, 80, dtype=torch.long))
              for f in (clean, shifted, clean)]
    row = Row(name="guarded", method="online", preset="full", overrides={"batch_size": 1, "micro_batch": 1,
                                                                         "shift_gate": (1.0, 2.0)})
    score = evaluate_video(model, frames, row, 0, "v", panoptic=False, instance=False)
    assert len(score.per_frame_shift_score) == len(score.per_frame_step_scale) == 3
    assert score.per_frame_step_scale[1] == 1.0 and score.per_frame_shift_score[1] > 2.0
    assert score.per_frame_step_scale[0] < 1.0 and score.per_frame_shift_score[0] < score.per_frame_shift_score[1]


def test_a_segment_gets_a_confusion_matrix_of_its_own_frames_only(tiny_model) -> None:
    """evaluate_video(segment=(start, stop)): the pooled final-clean figure's input counts exactly those frames."""
    from mask2former_ttt.evaluation.protocol import Row
    from mask2former_ttt.evaluation.video_eval import LabelledFrame, evaluate_video

    g = torch.Generator().manual_seed(0)
    image = (torch.rand(3, 64, 80, generator=g) * 255).to(torch.uint8)
    labels = [torch.full((64, 80), c, dtype=torch.long) for c in (0, 1, 1, 0)]
    labels[2][:, :40] = 255  # ignored pixels count nowhere
    frames = [LabelledFrame(image, lab, torch.zeros(64, 80, dtype=torch.long)) for lab in labels]
    row = Row(name="main_task_only", method="main_only", preset="full")
    score = evaluate_video(tiny_model, frames, row, 0, "v", panoptic=False, instance=False, segment=(1, 3))
    per_label = [sum(r) for r in score.segment_confusion]
    assert per_label[0] == 0 and per_label[1] == 64 * 80 + 64 * 40  # frames 1 and 2 only, frame 2 half ignored
    assert score.segment == [1, 3]
    assert sum(map(sum, score.confusion)) == 3 * 64 * 80 + 64 * 40
    assert evaluate_video(tiny_model, frames, row, 0, "v", panoptic=False, instance=False).segment_confusion is None
