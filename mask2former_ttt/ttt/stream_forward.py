"""One stream's forward: the shared model with the stream's tensors in place of θ0's, swapped in by `TensorSwap`
(ttt/tensor_swap.py), or with `TTTConfig.compile` through `functional_call`, which dynamo traces."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch.func import functional_call

from model.device import autocast
from model.ymodel import YModel
from mask2former_ttt.ttt.tensor_swap import TensorSwap


class StreamForward:
    """`forward(tensors, x, mode)`: the shared `model` on x (B, 4, h, w) in `mode`, with `tensors` (name -> tensor,
    a subset of `names`) in place of the shared ones (empty: θ0, the shared weights), under autocast with `use_amp`."""

    def __init__(self, model: YModel, names: list[str], compile: bool, use_amp: bool) -> None:
        self.model = model
        self.swap = TensorSwap(model, names)
        self.compile = compile
        self.use_amp = use_amp
        self.device = next(model.parameters()).device
        self._compiled: Callable[..., Any] | None = None

    def __call__(self, tensors: dict[str, torch.Tensor], x: torch.Tensor, mode: str) -> Any:
        with autocast(self.device, self.use_amp):
            if self.compile:
                if self._compiled is None:
                    self._compiled = torch.compile(self._functional, dynamic=False)
                return self._compiled(tensors, x, mode)
            if not tensors:
                return self.model(x, mode=mode)
            return self.swap(tensors, x, mode=mode)

    def _functional(self, params: dict[str, torch.Tensor], x: torch.Tensor, mode: str) -> Any:
        # the Y-model ties no tensors (tests/ttt/test_hot_path.py), so functional_call's per-call search for tied
        # names (a walk of every module, ~2 ms per call on the tiny model) is skipped
        return functional_call(self.model, params, (x,), {"mode": mode}, strict=False, tie_weights=False)
