"""`step_frame`: the one function that steps a frame for the service, `segment`, `evaluate` and jobs."""

from __future__ import annotations

import math

import pytest
import torch

from model.postprocess import postprocess
from mask2former_ttt.ttt import METHODS, build_adapter
from mask2former_ttt.ttt.frame_step import step_frame
from mask2former_ttt.ttt.protocol import Adapter


def test_step_frame_post_processes_the_adapters_prediction_at_the_asked_size(tiny_model, frames):
    a = build_adapter(tiny_model, "online", "full", batch_size=2, micro_batch=2)
    twin = build_adapter(tiny_model, "online", "full", batch_size=2, micro_batch=2)
    for i, f in enumerate(frames[:3]):
        step = step_frame(a, f, "panoptic", (40, 50))
        raw = twin.step(f)  # same seed: the same adaptation, so the same logits
        cfg = tiny_model.cfg
        ref = postprocess(raw.class_logits, raw.mask_logits, "panoptic", (40, 50), cfg.thing_class_ids,
                          cfg.object_mask_threshold, cfg.overlap_threshold)
        assert torch.equal(step.logits.class_logits, raw.class_logits)
        assert torch.equal(step.result.id_map, ref.id_map) and step.result.id_map.device.type == "cpu"
        assert step.stats.frame_index == i
        assert set(step.timings_s) == {"ttt", "predict", "postprocess"}
        assert step.timings_s["postprocess"] == step.stats.postprocess_s > 0
        assert math.isclose(
            step.timings_s["ttt"],
            step.stats.sample_s + step.stats.ttt_forward_s + step.stats.ttt_backward_s + step.stats.optimizer_s,
        )


def test_default_size_is_the_frames_and_no_task_means_logits_only(tiny_model, frames):
    a = build_adapter(tiny_model, "main_only")
    assert step_frame(a, frames[0], "semantic").result.label_map.shape == frames[0].shape[1:]
    only_logits = step_frame(a, frames[1], None)
    assert only_logits.result is None and "postprocess" not in only_logits.timings_s


def test_record_is_the_results_layout(tiny_model, frames):
    a = build_adapter(tiny_model, "online", "full", batch_size=2, micro_batch=2)
    step = step_frame(a, frames[0], "semantic")
    rec = step.record()
    assert set(rec) == {"ttt", "timings_ms"}
    assert rec["ttt"]["loss"] == step.stats.loss and rec["ttt"]["steps_taken"] == 1
    assert set(rec["ttt"]) == {
        "loss", "steps_taken", "rolled_back", "rollbacks", "reset", "shift_score", "confidence_score",
        "step_scale", "steps_skipped", "step_errors",
    }
    assert rec["timings_ms"]["predict"] == round(step.timings_s["predict"] * 1000, 3)
    step.stats.loss = float("nan")
    assert step.record()["ttt"]["loss"] is None  # JSON has no NaN


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_is_an_adapter_with_its_declared_capabilities(tiny_model, method):
    a = build_adapter(tiny_model, method, "full", batch_size=2, micro_batch=2)
    assert isinstance(a, Adapter)
    assert a.needs_whole_video == METHODS[method].needs_whole_video == (method == "offline_all_frames")
