"""The TTT view (masked input + reconstruction + ℓ_s of one frame): shapes, the stream's weights, no side effects."""

from __future__ import annotations

import torch

from mask2former_ttt.ttt import build_adapter
from mask2former_ttt.ttt.view import MASKED_GREY, reconstruction_view


def test_view_shapes_and_masked_patches(tiny_model, frames):
    a = build_adapter(tiny_model, "online", "full")
    view = reconstruction_view(a, frames[0], seed=1)
    h, w = view.masked.shape[:2]
    assert view.masked.dtype.name == view.reconstruction.dtype.name == "uint8"
    assert view.reconstruction.shape == (h, w, 3) and view.masked.shape == (h, w, 3)
    grey = (view.masked == MASKED_GREY).all(axis=2).mean()
    ratio = a.cfg.mask_ratio
    assert abs(grey - ratio) < 0.1, (grey, ratio)  # the stream's mask ratio of the patches is greyed out
    assert view.loss > 0


def test_view_uses_the_streams_adapted_weights_and_leaves_the_stream_alone(tiny_model, frames):
    a = build_adapter(tiny_model, "online", "full")
    fresh = reconstruction_view(a, frames[0], seed=1)
    for f in frames[:3]:
        a.step(f)
    rng = a.generator.get_state().clone()
    params = {n: t.detach().clone() for n, t in a.params.items()}
    adapted = reconstruction_view(a, frames[0], seed=1)
    assert not (adapted.reconstruction == fresh.reconstruction).all(), "the view must use the adapted weights"
    assert adapted.loss != fresh.loss
    assert torch.equal(a.generator.get_state(), rng), "the view must not draw from the stream's generator"
    assert all(torch.equal(params[n], t) for n, t in a.params.items())
    again = reconstruction_view(a, frames[0], seed=1)
    assert (again.reconstruction == adapted.reconstruction).all() and again.loss == adapted.loss
