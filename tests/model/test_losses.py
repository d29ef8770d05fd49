"""Losses: ℓ_s reaches f and g only; the joint loss trains everything."""

from __future__ import annotations

import torch

from model.losses import JointLoss
from model.masking import normalize, random_patch_mask, reconstruction_loss, with_flag


def _grads(model) -> dict[str, bool]:
    return {n: p.grad is not None and bool(p.grad.abs().sum() > 0) for n, p in model.named_parameters()}


def test_reconstruction_loss_sends_gradient_to_f_and_g_and_none_to_h(tiny_model):
    model = tiny_model
    model.requires_grad_(True).zero_grad(set_to_none=True)
    x = normalize(torch.randint(0, 255, (2, 3, 64, 64), dtype=torch.uint8), model.cfg)
    loss = JointLoss(model).reconstruction(model, x, torch.Generator().manual_seed(0))
    loss.backward()
    g = _grads(model)
    assert any(v for n, v in g.items() if n.startswith("encoder."))
    assert any(v for n, v in g.items() if n.startswith("recon."))
    assert not any(v for n, v in g.items() if n.startswith("head."))
    model.zero_grad(set_to_none=True)
    model.requires_grad_(False)


def test_joint_loss_trains_h_too(tiny_model):
    model = tiny_model
    model.requires_grad_(True).zero_grad(set_to_none=True)
    x = normalize(torch.randint(0, 255, (2, 3, 64, 64), dtype=torch.uint8), model.cfg)
    masks = [torch.zeros(2, 64, 64), torch.zeros(1, 64, 64)]
    masks[0][0, :32], masks[0][1, 32:], masks[1][0] = 1, 1, 1
    classes = [torch.tensor([0, 3]), torch.tensor([5])]
    total, parts = JointLoss(model)(model, x, masks, classes)
    total.backward()
    assert {"loss_main", "loss_recon", "loss_cross_entropy", "loss_mask", "loss_dice"} <= set(parts)
    assert any(v for n, v in _grads(model).items() if n.startswith("head."))
    model.zero_grad(set_to_none=True)
    model.requires_grad_(False)


def test_masked_only_loss_ignores_visible_pixels():
    target = torch.zeros(1, 3, 32, 32)
    visible = random_patch_mask(1, 32, 32, 16, 0.5, torch.Generator().manual_seed(0))
    pred = target + visible * 10.0  # wrong only where visible
    assert reconstruction_loss(pred, target, visible, "masked") == 0
    assert reconstruction_loss(pred, target, visible, "all") > 0


def test_mask_ratio_patch_and_flag():
    visible = random_patch_mask(3, 64, 96, 16, 0.85, torch.Generator().manual_seed(1))
    cells = visible[:, 0, ::16, ::16]
    assert cells.shape == (3, 4, 6)
    assert all(int((c == 0).sum()) == 24 - int(24 * (1 - 0.85)) == 21 for c in cells)  # MAE's len_keep = int(L(1-r))
    assert not torch.equal(cells[0], cells[1]), "each sample gets its own mask"
    assert torch.equal(visible[:, :, :16, :16], visible[:, :, :1, :1].expand(-1, -1, 16, 16))
    x = torch.randn(3, 3, 64, 96)
    x4 = with_flag(x, visible)
    assert torch.equal(x4[:, 3:], visible) and torch.all(x4[:, :3][visible.expand(-1, 3, -1, -1) == 0] == 0)
    assert torch.all(with_flag(x)[:, 3] == 1)
