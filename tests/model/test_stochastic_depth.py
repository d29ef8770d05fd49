"""Drop-path per thread and per stream (`model.stochastic_depth`): what lets worker threads share one model."""

from __future__ import annotations

import threading

import torch

from model.stochastic_depth import StreamDropPath, stochastic_depth, use_stream_drop_path


def _ones() -> torch.Tensor:
    return torch.ones(64, 3, 5)


def test_identity_in_eval_mode_outside_the_context():
    layer = StreamDropPath(0.5).eval()
    assert torch.equal(layer(_ones()), _ones())


def test_inside_the_context_samples_are_dropped_with_draws_from_the_given_generator():
    layer = StreamDropPath(0.5).eval()
    global_state = torch.get_rng_state()
    with stochastic_depth(torch.Generator().manual_seed(3)):
        a = layer(_ones())
    with stochastic_depth(torch.Generator().manual_seed(3)):
        b = layer(_ones())
    assert torch.equal(torch.get_rng_state(), global_state)  # the global RNG is not touched
    assert torch.equal(a, b)  # reproducible from the stream's generator alone
    per_sample = a[:, 0, 0]
    assert set(per_sample.tolist()) == {0.0, 2.0}  # whole samples dropped, survivors scaled by 1 / keep
    assert torch.equal(a, per_sample[:, None, None].expand_as(a))
    assert torch.equal(layer(_ones()), _ones())  # the context ended


def test_training_mode_still_drops_paths_for_joint_training():
    layer = StreamDropPath(0.5).train()
    assert not torch.equal(layer(_ones()), _ones())


def test_another_thread_predicting_meanwhile_is_unaffected():
    layer = StreamDropPath(0.9).eval()
    inside, outside_done = threading.Event(), threading.Event()
    seen: dict[str, torch.Tensor] = {}

    def other_thread() -> None:
        inside.wait(5)
        seen["other"] = layer(_ones())
        outside_done.set()

    t = threading.Thread(target=other_thread)
    t.start()
    with stochastic_depth(torch.Generator().manual_seed(0)):
        inside.set()
        assert outside_done.wait(5)
        assert not torch.equal(layer(_ones()), _ones())
    t.join()
    assert torch.equal(seen["other"], _ones())


def test_the_encoder_uses_stream_drop_path(tiny_model):
    from transformers.models.swin.modeling_swin import SwinDropPath

    mods = list(tiny_model.encoder.modules())
    assert not any(isinstance(m, SwinDropPath) for m in mods)
    # every block but the first, whose rate is 0 (transformers builds an Identity there)
    assert sum(isinstance(m, StreamDropPath) for m in mods) == sum(tiny_model.cfg.swin.depths) - 1
    assert use_stream_drop_path(tiny_model) == 0
