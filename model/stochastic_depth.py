"""Stochastic depth (Swin's DropPath) that does not depend on the shared module's `training` flag.

One `YModel` is shared by every stream of a process, possibly stepped by several worker threads at once: one
thread's TTT step needs drop-path active while another thread predicts with it off, and each stream's draws must
come from that stream's own generator (reproducible per stream, whatever else runs). `StreamDropPath` therefore
drops paths when the calling thread is inside `stochastic_depth(generator)` (drawing from `generator`), or, as
transformers' SwinDropPath, when the module is in training mode (joint training: global RNG).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

_local = threading.local()


@contextmanager
def stochastic_depth(generator: torch.Generator) -> Iterator[None]:
    """Within this block, on this thread, every `StreamDropPath` drops paths with draws from `generator` (CPU)."""
    previous = getattr(_local, "generator", None)
    _local.generator = generator
    try:
        yield
    finally:
        _local.generator = previous


class StreamDropPath(nn.Module):
    """x: (B, ...) -> x with whole samples' residual branch dropped with probability `drop_prob` (kept ones scaled
    by 1 / (1 - drop_prob)); identity outside `stochastic_depth` and outside training mode."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        generator: torch.Generator | None = getattr(_local, "generator", None)
        if self.drop_prob == 0.0 or (generator is None and not self.training):
            return hidden_states
        keep_prob = 1 - self.drop_prob
        shape = (hidden_states.shape[0],) + (1,) * (hidden_states.ndim - 1)
        draws = torch.rand(shape, generator=generator)  # CPU draws: a stream's generator lives on the CPU
        keep = torch.floor(draws + keep_prob).to(device=hidden_states.device, dtype=hidden_states.dtype)
        return hidden_states.div(keep_prob) * keep

    def extra_repr(self) -> str:
        return f"p={self.drop_prob}"


def use_stream_drop_path(module: nn.Module) -> int:
    """Replace every transformers `SwinDropPath` under `module` by a `StreamDropPath` of the same probability;
    returns how many were replaced."""
    from transformers.models.swin.modeling_swin import SwinDropPath

    replaced = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, SwinDropPath):
                setattr(parent, name, StreamDropPath(child.drop_prob))
                replaced += 1
    return replaced
