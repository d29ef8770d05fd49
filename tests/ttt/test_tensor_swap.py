"""`TensorSwap` computes what `functional_call` computes (outputs and gradients), puts the shared parameters back
(also when the forward raises), and refuses names that are not parameters."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

from model.config import preset
from model.masking import normalize, with_flag
from mask2former_ttt.ttt import build_adapter
from mask2former_ttt.ttt.param_groups import mae_names
from mask2former_ttt.ttt.tensor_swap import TensorSwap
from tests.random_model import random_model


@pytest.fixture(scope="module")
def model():
    return random_model(preset("tiny"), seed=3).requires_grad_(False)


def _stream_tensors(model, names):
    g = torch.Generator().manual_seed(5)
    shared = dict(model.named_parameters())
    return {n: (shared[n] + 0.01 * torch.randn(shared[n].shape, generator=g)).requires_grad_(True) for n in names}


def test_outputs_and_gradients_equal_functional_call(model) -> None:
    names = mae_names(model)
    tensors = _stream_tensors(model, names)
    x = with_flag(normalize(torch.randint(0, 255, (1, 3, 64, 96), dtype=torch.uint8), model.cfg))
    swap = TensorSwap(model, names)
    ours = swap(tensors, x, mode="reconstruct")
    (g_ours,) = torch.autograd.grad(ours.square().mean(), [tensors[names[0]]])
    ref = functional_call(model, tensors, (x,), {"mode": "reconstruct"}, strict=False, tie_weights=False)
    (g_ref,) = torch.autograd.grad(ref.square().mean(), [tensors[names[0]]])
    assert torch.equal(ours, ref)
    assert torch.equal(g_ours, g_ref)
    plain = model(x, mode="reconstruct")
    assert not torch.allclose(plain, ours)  # the stream's tensors were really used


def test_shared_parameters_are_back_after_the_call_and_after_an_exception(model) -> None:
    names = mae_names(model)
    before = {n: p for n, p in model.named_parameters()}
    swap = TensorSwap(model, names)
    x = with_flag(normalize(torch.zeros(1, 3, 64, 64, dtype=torch.uint8), model.cfg))
    swap(_stream_tensors(model, names), x, mode="predict")
    with pytest.raises(KeyError):
        swap({names[0]: torch.zeros(1)}, x, mode="predict")  # fails part-way through applying
    with pytest.raises(ValueError):
        with swap.applied(_stream_tensors(model, names)):
            raise ValueError("the forward failed")
    after = dict(model.named_parameters())
    assert all(after[n] is before[n] for n in before)


def test_names_that_are_not_parameters_are_refused(model) -> None:
    with pytest.raises(KeyError, match="not a parameter"):
        TensorSwap(model, ["encoder.no_such_tensor"])


def test_the_adapter_predicts_with_its_adapted_tensors(model) -> None:
    """After a step the stream's prediction differs from the shared model's, and the shared model is untouched."""
    a = build_adapter(model, "online", "full", batch_size=1, micro_batch=1, guard=None, lr=1.0)
    frame = torch.randint(0, 255, (3, 64, 96), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    a.step(frame)
    x = with_flag(normalize(frame[None], model.cfg))
    ours = a.forward(x, "predict").mask_logits
    assert not torch.allclose(ours, model(x, mode="predict").mask_logits)
    ref = functional_call(model, a.params, (x,), {"mode": "predict"}, strict=False, tie_weights=False)
    assert torch.equal(ours, ref.mask_logits)
