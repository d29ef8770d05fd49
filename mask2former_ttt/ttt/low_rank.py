"""Low-rank deltas (`adapt_scope="lowrank"`): a stream adapts W = W0 + B·A for each of f's and g's ≥2-D weights
(LoRA-style factors of rank r; convolution kernels as (out, in·k·k) matrices) and its 1-D tensors (norm affines,
biases) directly.

A cost lever: the stream then owns r·(out + in) numbers per matrix instead of out·in (the tiny model at r = 4:
≈ 4 % of the adapted bytes), so its optimizer state, memory and state files shrink; the forward gains one small
matmul per matrix. `B` starts at zero, so a new stream predicts exactly with W0; `A` starts from a fixed seed, so
every stream on a model starts alike (and θ0's flat copy can be shared, `flat_params.flat_theta0`).
"""

from __future__ import annotations

import math
from typing import Mapping

import torch

A_SUFFIX = ".lora_a"
B_SUFFIX = ".lora_b"
INIT_SEED = 0


class LowRankDeltas:
    """The trainable factors for `names` (tensors of the shared model) and how they map back onto them."""

    def __init__(self, shared: Mapping[str, torch.Tensor], names: list[str], rank: int) -> None:
        if rank < 1:
            raise ValueError(f"lowrank_rank must be >= 1, got {rank}")
        self.shared = {n: shared[n] for n in names}
        self.matrices = [n for n in names if shared[n].ndim >= 2]
        self.direct = [n for n in names if shared[n].ndim < 2]
        g = torch.Generator().manual_seed(INIT_SEED)
        init: dict[str, torch.Tensor] = {n: shared[n] for n in self.direct}
        for n in self.matrices:
            w = shared[n]
            out, inp = w.shape[0], w.numel() // w.shape[0]
            r = min(rank, out, inp)
            a = torch.randn(r, inp, generator=g, dtype=w.dtype) / math.sqrt(inp)
            init[n + A_SUFFIX] = a.to(w.device)
            init[n + B_SUFFIX] = torch.zeros(out, r, dtype=w.dtype, device=w.device)
        self.init = init

    def applied(self, params: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Trainable tensors -> the shared model's names: W0 + (B @ A) reshaped to W, and the 1-D tensors as they
        are."""
        out = {n: params[n] for n in self.direct}
        for n in self.matrices:
            w0 = self.shared[n]
            out[n] = w0 + (params[n + B_SUFFIX] @ params[n + A_SUFFIX]).view(w0.shape)
        return out
