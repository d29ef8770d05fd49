"""StreamAdapter paths the presets do not take by default: the wrappers' delegation (prepare, state loading,
smoothing across a size change) and optimizer state round trips."""

from __future__ import annotations

import pytest
import torch

from mask2former_ttt.ttt import build_adapter
from mask2former_ttt.ttt.baselines import AdapterWrapper, OfflineAllFrames, TemporalSmoothing
from mask2former_ttt.ttt.config import ttt_preset


def test_a_wrapper_prepares_and_restores_its_inner_adapter(tiny_model, frames) -> None:
    inner = OfflineAllFrames(tiny_model, ttt_preset("full", batch_size=2, micro_batch=2))
    wrapped = AdapterWrapper(inner)
    assert wrapped.needs_whole_video
    wrapped.prepare(frames[:2])
    assert inner.params and any(not torch.equal(p, inner.theta0[n]) for n, p in inner.params.items())

    online = build_adapter(tiny_model, "temporal_smoothing", "full", batch_size=2, micro_batch=2)
    for f in frames[:3]:
        online.step(f)
    state = online.state_dict()
    fresh = build_adapter(tiny_model, "temporal_smoothing", "full", batch_size=2, micro_batch=2)
    fresh.load_state_dict(state)
    assert fresh.inner.frame_index == 3
    assert all(torch.equal(fresh.inner.params[n], p) for n, p in online.inner.params.items())


def test_smoothing_restarts_when_the_frame_size_changes(tiny_model, frames) -> None:
    s = TemporalSmoothing(build_adapter(tiny_model, "main_only"), span=3)
    s.step(frames[0])
    s.step(frames[1])
    bigger = torch.nn.functional.interpolate(frames[2][None].float(), size=(96, 256)).to(torch.uint8)[0]  # another aspect: another working size
    out = s.step(bigger)
    raw = build_adapter(tiny_model, "main_only").step(bigger)
    assert len(s.history) == 1
    assert torch.allclose(out.mask_logits, raw.mask_logits, atol=1e-4)


@pytest.mark.parametrize("preset", ["full", "release"])
def test_optimizer_state_round_trips_for_both_optimizers(tiny_model, frames, preset) -> None:
    a = build_adapter(tiny_model, "online", preset, batch_size=2, micro_batch=2, guard=None,
                      reset_optimizer_each_frame=False)
    for f in frames[:2]:
        a.step(f)
    b = build_adapter(tiny_model, "online", preset, batch_size=2, micro_batch=2, guard=None,
                      reset_optimizer_each_frame=False)
    b.load_state_dict(a.state_dict())
    ra, rb = a.step(frames[2]), b.step(frames[2])
    assert torch.equal(ra.class_logits, rb.class_logits)
