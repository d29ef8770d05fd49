"""The flat store of a stream's adapted tensors: a step over it equals the textbook per-tensor step, gradients
accumulate into the one buffer, θ0's flat copy is shared per model replica, and old stream states are refused."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

from model.config import preset
from model.masking import reconstruction_loss, with_flag
from mask2former_ttt.ttt import build_adapter
from mask2former_ttt.ttt.config import ttt_preset
from mask2former_ttt.ttt.flat_params import FlatParams, flat_theta0
from mask2former_ttt.ttt.param_groups import GroupSpec, group_specs
from mask2former_ttt.ttt.objectives import MASK_PATCH
from tests.random_model import random_model, without_drop_path


@pytest.fixture(scope="module")
def model():
    return random_model(preset("tiny"), seed=11).requires_grad_(False)


def _frame(seed: int) -> torch.Tensor:
    return torch.randint(0, 255, (3, 64, 96), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_one_step_equals_the_per_tensor_reference(model) -> None:
    """SGD + momentum (first step: buf = g), global-norm clipping and the anchor pull, computed tensor by tensor
    with functional_call, give the weights the flat adapter ends with."""
    model = without_drop_path(model)  # no input statistics: the guard's gates and alignment are off, its anchor not
    cfg = ttt_preset("full", batch_size=1, micro_batch=1, lr=0.05, grad_clip=0.5, anchor=0.01)
    a = build_adapter(model, "online", cfg)
    frame = _frame(0)
    gen_state = a.generator.get_state()
    a.step(frame)
    assert a.params and all(p.grad is None for p in a.params.values())

    # the reference, with the same random draws
    from mask2former_ttt.ttt.adapter import StreamAdapter
    from model.masking import normalize, random_patch_mask
    from mask2former_ttt.ttt.frames import to_working_resolution

    g = torch.Generator().manual_seed(0)
    g.set_state(gen_state)
    x = to_working_resolution(frame, model.cfg.image_size)
    idx = torch.randint(1, (1,), generator=g)  # with-replacement sampling draws an index first
    assert int(idx) == 0
    batch = normalize(x[None], model.cfg)
    visible = random_patch_mask(1, batch.shape[2], batch.shape[3], MASK_PATCH, cfg.mask_ratio, g)
    theta0 = {n: model.get_parameter(n) for n in a.theta0}
    p = {n: t.detach().clone().requires_grad_(True) for n, t in theta0.items()}
    pred = functional_call(model, p, (with_flag(batch, visible),), {"mode": "reconstruct"}, strict=False)
    loss = reconstruction_loss(pred, batch, visible, cfg.loss_on)
    grads = torch.autograd.grad(loss, list(p.values()), allow_unused=True)
    grads = [torch.zeros_like(t) if gr is None else gr for t, gr in zip(p.values(), grads)]
    norm = torch.linalg.vector_norm(torch.stack([gr.norm() for gr in grads]))
    scale = min(1.0, cfg.grad_clip / (float(norm) + 1e-6))
    for (n, t), gr in zip(p.items(), grads):
        want = t.detach() - cfg.lr * gr * scale
        want = torch.lerp(want, theta0[n], cfg.guard.anchor)
        assert torch.allclose(a.params[n], want, atol=1e-6, rtol=1e-5), n
    assert float(norm) > cfg.grad_clip  # the clipping branch was exercised
    assert isinstance(a, StreamAdapter)


def test_gradients_are_gathered_into_one_flat_buffer(model) -> None:
    theta0 = {n: t for n, t in model.named_parameters() if n.startswith("recon.")}
    flat = FlatParams(theta0, group_specs(theta0, ttt_preset("full")))
    first, last = flat.order[0], flat.order[-1]
    (flat.tensors[first].sum() * 2 + flat.tensors[last].sum()).backward()
    (flat.tensors[first].sum() * 3).backward()  # a second micro-batch accumulates
    flat.gather_grad()
    a, b, _ = flat._spans[first]
    c, d, _ = flat._spans[last]
    assert torch.all(flat.grad[a:b] == 5.0) and torch.all(flat.grad[c:d] == 1.0)
    assert torch.all(flat.grad[b:c] == 0.0)  # tensors without a gradient count as zeros
    assert all(t.grad is None for t in flat.tensors.values())  # autograd's buffers are dropped
    assert sum(float(s.grad.sum()) for s in flat.group_slices) == float(flat.grad.sum())
    flat.free_grad()
    assert flat.grad is None and all(t.grad is None for t in flat.tensors.values())


def test_groups_are_contiguous_slices_with_their_lr_and_decay(model) -> None:
    cfg = ttt_preset("release")  # backbone ×0.1, weight decay on matrices only
    theta0 = {n: t for n, t in model.named_parameters() if n.startswith(("encoder.", "recon."))}
    flat = FlatParams(theta0, group_specs(theta0, cfg))
    groups = flat.param_groups()
    assert sum(g["params"][0].numel() for g in groups) == flat.numel
    assert {g["lr"] for g in groups} == {cfg.lr, cfg.lr * cfg.backbone_lr_mult}
    assert {g["weight_decay"] for g in groups} == {0.0, cfg.weight_decay}
    with pytest.raises(ValueError, match="exactly once"):
        FlatParams(theta0, [GroupSpec(tuple(list(theta0)[:-1]), 1.0, 0.0)])


def test_theta0_flat_copy_is_shared_per_replica(model) -> None:
    import copy

    a = build_adapter(model, "online", "full", batch_size=1, micro_batch=1, guard=None)
    b = build_adapter(model, "online", "full", batch_size=1, micro_batch=1, guard=None)
    a.step(_frame(1))
    b.step(_frame(2))
    assert a._theta0_flat() is b._theta0_flat()
    replica = copy.deepcopy(model)
    c = build_adapter(replica, "online", "full", batch_size=1, micro_batch=1, guard=None)
    c.step(_frame(3))
    assert c._theta0_flat() is not a._theta0_flat()
    assert torch.equal(c._theta0_flat(), a._theta0_flat())
    assert flat_theta0(model, a.theta0, a.flat.order) is a._theta0_flat()


def test_rollback_restores_theta0_through_the_flat_copy(model) -> None:
    a = build_adapter(model, "online", "full", batch_size=1, micro_batch=1, guard=None)
    a.step(_frame(4))
    assert any(not torch.equal(p, a.theta0[n]) for n, p in a.params.items())
    from mask2former_ttt.ttt.stats import StepStats

    a.rollback(StepStats(frame_index=0), "test")
    assert all(torch.equal(p, a.theta0[n]) for n, p in a.params.items())
