"""Cross-stream batching (ttt/cross_stream.py): N streams' predictions and TTT steps in one vmapped call give each
stream what its own serial `step` gives: the same logits, losses, adapted tensors and generator state."""

from __future__ import annotations

import copy

import pytest
import torch

from mask2former_ttt.ttt.cross_stream import batch_key
from mask2former_ttt.ttt.frames import to_working_resolution
from mask2former_ttt.ttt.methods import build_adapter
from mask2former_ttt.ttt.shift_score import reference_statistics
from tests.random_model import without_drop_path
from tests.serial_and_batched import run_serial_and_batched

pytestmark = pytest.mark.filterwarnings("ignore:There is a performance drop:UserWarning")  # SDPA under vmap on CPU


def _clips(n_streams: int, n_frames: int) -> list[list[torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [[(torch.rand(3, 96, 128, generator=g) * 255).to(torch.uint8) for _ in range(n_frames)]
            for _ in range(n_streams)]


def _assert_same(serial, batched, pairs) -> None:
    for want, got in pairs:
        torch.testing.assert_close(got.class_logits, want.class_logits, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(got.mask_logits, want.mask_logits, atol=1e-4, rtol=1e-4)
        assert (got.stats.steps_taken, got.stats.step_scale) == (want.stats.steps_taken, want.stats.step_scale)
        assert (got.stats.loss is None) == (want.stats.loss is None)
        if want.stats.loss is not None:
            assert got.stats.loss == pytest.approx(want.stats.loss, rel=1e-4, abs=1e-5)  # fp32 order of sums
    for a, b in zip(serial, batched):
        torch.testing.assert_close(b.flat.data, a.flat.data, atol=1e-4, rtol=1e-4)
        assert torch.equal(b.generator.get_state(), a.generator.get_state())  # same draws, same order
        assert b.frame_index == a.frame_index and (b.pending is None) == (a.pending is None)


@pytest.mark.parametrize(("preset", "overrides"), [
    ("default", {}),  # pipelined, B = 1
    ("full", {}),  # a step before the prediction, B = 4
    ("default", {"predict_ema": 0.5}),  # predictions with the weights' moving average
])
def test_batched_streams_match_their_serial_steps(tiny_model, preset, overrides) -> None:
    serial, batched, pairs = run_serial_and_batched(tiny_model, _clips(3, 3), preset, **overrides)
    assert sum(got.stats.steps_taken for _, got in pairs) >= 6  # the streams did adapt
    # the streams diverged from each other: a batch that used one stream's tensors for all would not match
    assert (serial[0].flat.data - serial[1].flat.data).abs().max() > 1e-4
    _assert_same(serial, batched, pairs)


def test_drop_path_draws_are_replayed_per_stream(tiny_model) -> None:
    # with drop-path off the results differ from the drop-path run: the replay is what makes the latter match
    on = run_serial_and_batched(tiny_model, _clips(2, 2), "full")
    off = run_serial_and_batched(without_drop_path(tiny_model), _clips(2, 2), "full")
    _assert_same(*on)
    _assert_same(*off)
    assert on[2][-1][0].stats.loss != pytest.approx(off[2][-1][0].stats.loss, abs=1e-5)


def test_a_closed_shift_gate_skips_that_stream_only(tiny_model) -> None:
    clips = _clips(2, 3)
    clean = clips[0]
    model = copy.deepcopy(tiny_model)
    ref = reference_statistics(to_working_resolution(f, model.cfg.image_size) for f in clean)
    model.cfg.input_stats_reference = {**ref, "std": [max(s, 0.02) for s in ref["std"]]}
    clips[1] = [(f.float() * 0.3).to(torch.uint8) for f in clips[1]]  # dark: far from the reference
    serial, batched, pairs = run_serial_and_batched(model, clips, "full", anchor=0.1)
    scales = [(got.stats.step_scale, i % 2) for i, (_, got) in enumerate(pairs)]
    assert {s for s, i in scales if i == 0} == {0.0} and {s for s, i in scales if i == 1} == {1.0}
    _assert_same(serial, batched, pairs)


def test_batch_key_groups_only_streams_one_call_can_serve(tiny_model) -> None:
    a, b = build_adapter(tiny_model, preset="default", seed=0), build_adapter(tiny_model, preset="default", seed=1)
    assert batch_key(a, (128, 160)) == batch_key(b, (128, 160)) is not None
    assert batch_key(a, (128, 160)) != batch_key(a, (128, 192))  # another working size
    assert batch_key(a, (128, 160)) != batch_key(build_adapter(tiny_model, preset="fast"), (128, 160))
    assert batch_key(a, (128, 160)) != batch_key(build_adapter(copy.deepcopy(tiny_model), preset="default"), (128, 160))
    for other in (
        build_adapter(tiny_model, method="tent", preset="default"),  # another objective
        build_adapter(tiny_model, preset="release"),  # micro-batches of 8 under a batch of 32
        build_adapter(tiny_model, preset="full", micro_batch=2),  # gradient accumulation over micro-batches
        build_adapter(tiny_model, method="class_balance_reset", preset="default"),  # a wrapper post-processes step
    ):
        assert batch_key(other, (128, 160)) is None


def test_streams_whose_samples_differ_in_shape_still_match(tiny_model) -> None:
    # a stream's window can hold frames of an earlier size: its sample then cannot be stacked with the others'
    from mask2former_ttt.ttt.cross_stream import adapt_many
    from mask2former_ttt.ttt.stats import StepStats

    g = torch.Generator().manual_seed(2)
    sizes = [(96, 128), (64, 64), (64, 64)]
    frames = [to_working_resolution((torch.rand(3, *hw, generator=g) * 255).to(torch.uint8), 128) for hw in sizes]
    twins = []
    for _ in range(2):
        adapters = [build_adapter(tiny_model, preset="default", seed=i) for i in range(3)]
        for a, f in zip(adapters, frames):
            a.window.append(f)
        twins.append(adapters)
    for a in twins[0]:
        a.adapt(StepStats(frame_index=0))
    adapt_many(twins[1], [StepStats(frame_index=0) for _ in range(3)])
    for a, b in zip(*twins):
        torch.testing.assert_close(b.flat.data, a.flat.data, atol=1e-4, rtol=1e-4)


def test_streams_with_feature_alignment_batch_and_match_their_serial_steps(tiny_model) -> None:
    from mask2former_ttt.ttt.feature_stats import feature_reference
    from tests.gate_scenes import training_stills

    model = copy.deepcopy(tiny_model)
    model.cfg.feature_stats_reference = feature_reference(model, training_stills(model.cfg.image_size))
    aligned = build_adapter(model, preset="default", feature_align=0.5)
    assert batch_key(aligned, (96, 128)) is not None  # the batched path takes these streams
    assert batch_key(aligned, (96, 128)) != batch_key(build_adapter(model, preset="default"), (96, 128))
    for preset in ("default", "full"):
        serial, batched, pairs = run_serial_and_batched(model, _clips(2, 3), preset, feature_align=0.5)
        assert sum(got.stats.steps_taken for _, got in pairs) >= 2  # the streams did adapt
        plain = run_serial_and_batched(model, _clips(2, 3), preset, feature_align=0.0)[2]
        losses = [got.stats.loss for _, got in pairs if got.stats.loss is not None]
        assert losses and losses != pytest.approx([got.stats.loss for _, got in plain if got.stats.loss is not None],
                                                  rel=1e-2)  # the term is in the batched loss
        _assert_same(serial, batched, pairs)
