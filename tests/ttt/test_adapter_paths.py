"""StreamAdapter paths the presets do not take by default: cropped samples, the loss gate, last-good memory,
and the wrappers' delegation (prepare, state loading, smoothing across a size change)."""

from __future__ import annotations

import copy

import pytest
import torch

from model.masking import normalize
from mask2former_ttt.ttt import build_adapter
from mask2former_ttt.ttt.adapter import StreamAdapter
from mask2former_ttt.ttt.baselines import AdapterWrapper, OfflineAllFrames, TemporalSmoothing
from mask2former_ttt.ttt.config import ttt_preset


def _cfg(**kw):
    return ttt_preset("full", batch_size=3, micro_batch=3, shift_gate=None, **kw)


def test_crops_are_windows_of_the_frames_at_the_crop_size(tiny_model, frames) -> None:
    a = StreamAdapter(tiny_model, _cfg(crop=(64, 96)))
    for f in frames[:2]:
        a.window.append(f[:, :96, :128].contiguous())  # (3, 96, 128): both sides larger than the crop
    batch, valid = a._sample_batch()
    assert batch.shape == (3, 3, 64, 96) and valid is None
    full = [normalize(w[None], tiny_model.cfg)[0] for w in a.window]
    for sample in batch:  # each sample is one window frame cut at some offset that fits
        assert any(
            torch.equal(sample, f[:, t : t + 64, l : l + 96]) for f in full for t in range(33) for l in range(33)
        )


def test_a_crop_larger_than_the_frame_keeps_the_whole_frame(tiny_model, frames) -> None:
    a = StreamAdapter(tiny_model, _cfg(crop=(512, 512)))
    a.window.append(frames[0][:, :96, :128].contiguous())
    assert a._sample_batch()[0].shape == (3, 3, 96, 128)


def test_the_loss_gate_skips_the_update_on_frames_that_reconstruct_well(tiny_model, frames) -> None:
    model = copy.deepcopy(tiny_model)
    model.cfg.recon_loss_reference = 1.0
    gated = StreamAdapter(model, _cfg(loss_gate=1e9))  # every loss is below 1e9 x the reference
    r = gated.step(frames[0])
    assert r.stats.steps_taken == 0 and r.stats.loss is not None and r.stats.loss > 0
    assert all(torch.equal(p, gated.theta0[n]) for n, p in gated.params.items())
    assert not model.training
    open_gate = StreamAdapter(model, _cfg(loss_gate=1e-9))
    assert open_gate.step(frames[0]).stats.steps_taken == 1


def test_last_good_weights_are_held_and_counted(tiny_model, frames) -> None:
    theta0_bytes = sum(t.numel() * t.element_size() for t in StreamAdapter(tiny_model, _cfg()).theta0.values())
    plain = StreamAdapter(tiny_model, _cfg(window=2))
    keep = StreamAdapter(tiny_model, _cfg(window=2, rollback_to="last_good"))
    assert keep.estimated_memory_bytes((128, 160)) - plain.estimated_memory_bytes((128, 160)) == theta0_bytes
    for f in frames[:2]:
        plain.step(f)
        keep.step(f)
    assert keep.memory_bytes() - plain.memory_bytes() == theta0_bytes
    last_good = keep.flat.unflatten(keep.last_good)
    assert all(torch.equal(last_good[n], p) for n, p in keep.params.items())


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
    a = build_adapter(tiny_model, "online", preset, batch_size=2, micro_batch=2, shift_gate=None,
                      reset_optimizer_each_frame=False)
    for f in frames[:2]:
        a.step(f)
    b = build_adapter(tiny_model, "online", preset, batch_size=2, micro_batch=2, shift_gate=None,
                      reset_optimizer_each_frame=False)
    b.load_state_dict(a.state_dict())
    ra, rb = a.step(frames[2]), b.step(frames[2])
    assert torch.equal(ra.class_logits, rb.class_logits)
