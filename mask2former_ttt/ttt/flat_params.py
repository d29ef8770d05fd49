"""A stream's adapted tensors as views of one flat buffer, so the per-step bookkeeping is a handful of operator
calls instead of a few per tensor.

Each TTT step touches every adapted tensor several times outside forward/backward: zero the gradients, their
norm (clipping), the optimizer update, the pull toward θ0, the moving average. Done tensor by tensor that is
≈ 7 ms per step for the tiny model's 120 tensors on one CPU thread (`_foreach_*` kernels fall back to per-tensor
loops on the CPU); over one flat buffer it is one call each.

Layout: `data` (N,) holds every adapted tensor, grouped by optimizer group (`GroupSpec`: one contiguous slice per
learning rate / weight decay). `tensors[name]` is a leaf view of `data` with `requires_grad`, what the forward
uses (`TensorSwap`); `group_slices` are leaf views of whole groups, what the optimizer updates. After a backward
`gather_grad()` concatenates autograd's per-tensor gradients into one flat buffer (one copy: cheaper than having
autograd accumulate into views of a preset buffer, which costs an add per tensor) that the group slices' `.grad`
point into; `free_grad()` drops it (no gradient memory is kept between frames).

θ0 as one flat tensor (for the anchor pull and restores) is built once per model replica and tensor order and shared
by every stream on it (`flat_theta0`): one copy of the adapted weights per replica, not per stream.
"""

from __future__ import annotations

import math
import threading
import weakref
from typing import Iterable, Mapping

import torch
from torch import nn

from mask2former_ttt.ttt.param_groups import GroupSpec

_THETA0: "weakref.WeakKeyDictionary[nn.Module, dict[tuple, torch.Tensor]]" = weakref.WeakKeyDictionary()
_THETA0_LOCK = threading.Lock()


@torch.no_grad()
def clip_grad_norm(params: list[torch.Tensor], max_norm: float | None) -> torch.Tensor:
    """The gradients' total L2 norm; scales them to `max_norm` when it is exceeded. Unlike torch's
    clip_grad_norm_, gradients under the limit are not rewritten (a multiply by 1.0: a full pass over every
    adapted tensor, ~1 ms per step for the tiny model on the CPU)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    norm = float(total)  # one device sync
    if max_norm is not None and math.isfinite(norm) and norm > max_norm:
        torch._foreach_mul_(grads, max_norm / (norm + 1e-6))
    return total


def flatten(tensors: Iterable[torch.Tensor]) -> torch.Tensor:
    """The tensors' values, concatenated in order: (N,) (a new tensor, detached)."""
    return torch.cat([t.detach().reshape(-1) for t in tensors])


def flat_theta0(model: nn.Module, theta0: Mapping[str, torch.Tensor], order: tuple[str, ...]) -> torch.Tensor:
    """θ0's tensors in `order` as one flat (N,) tensor, cached per model replica and (name, shape) layout (the
    values behind one layout are the replica's shared weights, the same for every stream on it)."""
    key = tuple((n, tuple(theta0[n].shape)) for n in order)
    with _THETA0_LOCK:
        per_model = _THETA0.setdefault(model, {})
        if key not in per_model:
            per_model[key] = flatten(theta0[n] for n in order)
        return per_model[key]


class FlatParams:
    """One stream's adapted tensors, stored flat (see the module docstring)."""

    def __init__(self, source: Mapping[str, torch.Tensor], groups: list[GroupSpec]) -> None:
        self.groups = groups
        self.order: tuple[str, ...] = tuple(n for g in groups for n in g.names)
        if sorted(self.order) != sorted(source):
            raise ValueError("the optimizer groups must cover every adapted tensor exactly once")
        self.data = flatten(source[n] for n in self.order)
        self._spans: dict[str, tuple[int, int, torch.Size]] = {}
        offset = 0
        for name in self.order:
            shape = source[name].shape
            self._spans[name] = (offset, offset + source[name].numel(), shape)
            offset += source[name].numel()
        self.tensors: dict[str, torch.Tensor] = {
            name: self.data[a:b].view(shape).requires_grad_(True) for name, (a, b, shape) in self._spans.items()
        }
        self._group_bounds: list[tuple[int, int]] = []
        offset = 0
        for g in groups:
            size = sum(self._spans[n][1] - self._spans[n][0] for n in g.names)
            self._group_bounds.append((offset, offset + size))
            offset += size
        self.group_slices = [self.data[a:b].requires_grad_(True) for a, b in self._group_bounds]
        self.grad: torch.Tensor | None = None

    @property
    def numel(self) -> int:
        return self.data.numel()

    def param_groups(self) -> list[dict]:
        """torch.optim param groups: one flat slice per group, with its lr and weight decay."""
        return [
            {"params": [s], "lr": g.lr, "weight_decay": g.weight_decay} for s, g in zip(self.group_slices, self.groups)
        ]

    # ---- gradients ----------------------------------------------------------------------------------------
    def gather_grad(self) -> None:
        """After a backward that left per-tensor `.grad`s (autograd's own buffers): concatenate them into the flat
        gradient buffer (one copy; missing gradients are zeros) that the group slices' `.grad` point into, and drop
        the per-tensor ones."""
        parts = []
        for name, (a, b, _) in self._spans.items():
            g = self.tensors[name].grad
            parts.append(g.reshape(-1) if g is not None else self.data.new_zeros(b - a))
            self.tensors[name].grad = None
        self._use_grad(torch.cat(parts))

    def set_grad(self, grads: Mapping[str, torch.Tensor]) -> None:
        """Gradients computed outside autograd's `.grad` (e.g. by `torch.func.grad`), name -> tensor shaped like the
        adapted one, become the flat gradient buffer."""
        self._use_grad(torch.cat([grads[name].reshape(-1) for name in self.order]))

    def _use_grad(self, flat_grad: torch.Tensor) -> None:
        self.grad = flat_grad
        for s, (a, b) in zip(self.group_slices, self._group_bounds):
            s.grad = self.grad[a:b]

    def free_grad(self) -> None:
        """Drop the gradient buffer (and every view's `.grad`)."""
        self.grad = None
        for t in self.tensors.values():
            t.grad = None
        for s in self.group_slices:
            s.grad = None

    # ---- values -------------------------------------------------------------------------------------------
    @torch.no_grad()
    def copy_from(self, source: Mapping[str, torch.Tensor] | torch.Tensor) -> None:
        """Overwrite the values with a flat (N,) tensor in this order, or a name -> tensor mapping."""
        if isinstance(source, torch.Tensor):
            self.data.copy_(source)
        else:
            for name, t in self.tensors.items():
                t.copy_(source[name])

    def state(self) -> dict[str, torch.Tensor]:
        """name -> a detached copy of each tensor (the checkpoint format, independent of the flat layout)."""
        return self.unflatten(self.data)

    def views(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """A flat (N,) tensor in this order -> name -> views of it shaped like the adapted tensors (no copy)."""
        return {n: flat[a:b].view(shape) for n, (a, b, shape) in self._spans.items()}

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """A flat (N,) tensor in this order -> name -> copies shaped like the adapted tensors."""
        return {n: flat[a:b].view(shape).clone() for n, (a, b, shape) in self._spans.items()}
