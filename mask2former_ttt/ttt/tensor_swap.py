"""Run a module with some of its parameters replaced by a stream's own tensors: `torch.func.functional_call`'s
job, without its per-call cost.

`functional_call` resolves every dotted name to its submodule and goes through `Module.__setattr__`-level checks
twice per call (in and out): ≈ 0.7 ms for the tiny model's 120 adapted tensors on one CPU thread, paid by every
prediction and every TTT forward of every stream. `TensorSwap` resolves the names once, to the owning modules'
`_parameters` dicts, and swaps by plain dict assignment, which is what `functional_call` ends up doing too
(autograd sees the stream's tensors, the shared parameters are back in place afterwards, also on an exception).

One `TensorSwap` belongs to one module replica; like `functional_call`, it must not be used by two threads on the
same module at once (the device worker gives each lane its own replica).
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Mapping

import torch
from torch import nn


class TensorSwap:
    """Name -> slot bindings for `names` (parameters of `module`), resolved once."""

    def __init__(self, module: nn.Module, names: list[str]) -> None:
        self.module = module
        self.names = list(names)
        self._slots: list[tuple[dict[str, Any], str]] = []
        for name in self.names:
            prefix, _, leaf = name.rpartition(".")
            owner = module.get_submodule(prefix) if prefix else module
            if leaf not in owner._parameters:
                raise KeyError(f"{name!r} is not a parameter of {type(module).__name__}")
            self._slots.append((owner._parameters, leaf))

    @contextlib.contextmanager
    def applied(self, tensors: Mapping[str, torch.Tensor]) -> Iterator[None]:
        """Within the block the module computes with `tensors[name]` for every bound name; restored on exit."""
        saved = [slot[leaf] for slot, leaf in self._slots]
        try:
            for (slot, leaf), name in zip(self._slots, self.names):
                slot[leaf] = tensors[name]
            yield
        finally:
            for (slot, leaf), original in zip(self._slots, saved):
                slot[leaf] = original

    def __call__(self, tensors: Mapping[str, torch.Tensor], *args: Any, **kwargs: Any) -> Any:
        """`module(*args, **kwargs)` with `tensors` in place of the bound parameters."""
        with self.applied(tensors):
            return self.module(*args, **kwargs)
