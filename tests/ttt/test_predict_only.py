"""`predict_frame`: an image predicted with a stream's current weights leaves the stream exactly as it was."""

from __future__ import annotations

import pytest
import torch

from mask2former_ttt.ttt import build_adapter
from mask2former_ttt.ttt.predict_only import predict_frame


@pytest.mark.parametrize("method", ["online", "ln_adapt"])
def test_a_prediction_changes_nothing_of_the_stream(tiny_model, frames, method: str) -> None:
    a = build_adapter(tiny_model, method, "full", seed=1)
    b = build_adapter(tiny_model, method, "full", seed=1)
    for f in frames[:3]:
        a.step(f)
        b.step(f)
    step = predict_frame(a, frames[6], "semantic")
    assert step.result.label_map.shape == frames[6].shape[1:]
    assert step.stats.steps_taken == 0 and step.stats.loss is None
    for f in frames[3:5]:  # the stream goes on as its twin that predicted nothing
        ra, rb = a.step(f), b.step(f)
        assert torch.equal(ra.mask_logits, rb.mask_logits) and ra.stats.loss == rb.stats.loss


def test_the_prediction_is_the_adapted_weights(tiny_model, frames) -> None:
    a = build_adapter(tiny_model, "online", "full", seed=1)
    for f in frames[:3]:
        a.step(f)
    twin = build_adapter(tiny_model, "online", "full", seed=7)
    twin.load_state_dict(a.state_dict())  # the same weights, nothing else shared
    initial = build_adapter(tiny_model, "main_only", "full")
    adapted = predict_frame(a, frames[6], None).logits.mask_logits
    assert torch.equal(adapted, predict_frame(twin, frames[6], None).logits.mask_logits)
    assert not torch.equal(adapted, predict_frame(initial, frames[6], None).logits.mask_logits)
