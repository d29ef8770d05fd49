"""`finish_frame` on a given step result: the frame's timings, its default output size, the tracker, without running
a model (fast, so it is among the first tests the mutation check runs for these lines)."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from mask2former_ttt.ttt.frame_step import finish_frame
from mask2former_ttt.ttt.stats import StepResult, StepStats


def _logits(tiny_model, h: int = 24, w: int = 40) -> StepResult:
    g = torch.Generator().manual_seed(0)
    q, k = 6, tiny_model.cfg.num_classes
    stats = StepStats(frame_index=0, sample_s=1.0, ttt_forward_s=2.0, ttt_backward_s=4.0, optimizer_s=8.0,
                      predict_s=16.0)
    return StepResult(torch.randn(q, k + 1, generator=g), torch.randn(q, h // 4, w // 4, generator=g), stats, (h, w))


class _Tracker:
    def __init__(self) -> None:
        self.seen = 0

    def apply(self, result):
        self.seen += 1
        return result


def test_timings_add_the_step_stages_and_time_the_post_processing(tiny_model) -> None:
    adapter = SimpleNamespace(model=tiny_model)
    frame = torch.zeros(3, 24, 40, dtype=torch.uint8)
    step = finish_frame(adapter, _logits(tiny_model), frame, "semantic")
    assert step.timings_s["ttt"] == 15.0 and step.timings_s["predict"] == 16.0
    assert 0.0 <= step.timings_s["postprocess"] == step.stats.postprocess_s < 60.0
    assert step.result.label_map.shape == (24, 40)  # the frame's (H, W) by default, not (H, H) or (W, W)
    assert finish_frame(adapter, _logits(tiny_model), frame, "semantic", out_size=(12, 20)).result.label_map.shape \
        == (12, 20)


def test_the_tracker_sees_each_post_processed_result_and_none_is_fine(tiny_model) -> None:
    adapter = SimpleNamespace(model=tiny_model)
    frame = torch.zeros(3, 24, 40, dtype=torch.uint8)
    tracker = _Tracker()
    finish_frame(adapter, _logits(tiny_model), frame, "panoptic", tracker=tracker)
    assert tracker.seen == 1
    assert finish_frame(adapter, _logits(tiny_model), frame, "panoptic").result is not None
