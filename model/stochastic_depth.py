"""Stochastic depth (Swin's DropPath) that does not depend on the shared module's `training` flag.

One `YModel` is shared by every stream of a process, possibly stepped by several worker threads at once: one
thread's TTT step needs drop-path active while another thread predicts with it off, and each stream's draws must
come from that stream's own generator (reproducible per stream, whatever else runs). `StreamDropPath` therefore
drops paths when the calling thread is inside `stochastic_depth(generator)` (drawing from `generator`), or, as
transformers' SwinDropPath, when the module is in training mode (joint training: global RNG).

Several streams' TTT steps in one `torch.func.vmap` call (mask2former_ttt/ttt/cross_stream.py) cannot draw inside the
call from each stream's generator. They draw beforehand instead, in the order a serial step would, and replay those
draws through `drop_path_plan`: `record_drop_path_calls` lists the (shape, drop probability) of every drop-path
call of one forward, `draw_keeps` draws them from a stream's generator exactly as `StreamDropPath` would, and
`drop_path_plan(keeps)` feeds them back in call order, so each stream's result equals its serial step's.
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


class DropPathPlan:
    """Replaces the draws of every `StreamDropPath` call on this thread: `keeps` (n_calls, b) holds each call's
    keep factors (0 or 1) in call order; with `keeps=None` it only records each call's (shape, drop_prob) and drops
    nothing."""

    def __init__(self, keeps: torch.Tensor | None = None) -> None:
        self.keeps = keeps
        self.calls: list[tuple[tuple[int, ...], float]] = []

    def apply(self, hidden_states: torch.Tensor, drop_prob: float) -> torch.Tensor:
        shape = (hidden_states.shape[0],) + (1,) * (hidden_states.ndim - 1)
        k = len(self.calls)
        self.calls.append((shape, drop_prob))
        if self.keeps is None:
            return hidden_states
        if k >= self.keeps.shape[0]:
            raise RuntimeError(f"drop-path plan has {self.keeps.shape[0]} calls, the forward made more")
        keep = self.keeps[k].reshape(shape).to(dtype=hidden_states.dtype)
        return hidden_states.div(1 - drop_prob) * keep


@contextmanager
def drop_path_plan(keeps: torch.Tensor | None = None) -> Iterator[DropPathPlan]:
    """Within this block, on this thread, drop-path calls take their keep factors from `keeps` ((n_calls, b), in
    call order; see `draw_keeps`) instead of drawing, or with `keeps=None` are recorded without dropping."""
    previous = getattr(_local, "plan", None)
    plan = _local.plan = DropPathPlan(keeps)
    try:
        yield plan
    finally:
        _local.plan = previous


def draw_keeps(calls: list[tuple[tuple[int, ...], float]], generator: torch.Generator) -> torch.Tensor:
    """The keep factors `StreamDropPath` would draw from `generator` for `calls` (a recorded plan's), in order:
    (n_calls, b) float."""
    rows = [torch.floor(torch.rand(shape, generator=generator) + (1 - p)).reshape(-1) for shape, p in calls]
    return torch.stack(rows) if rows else torch.zeros(0, 0)


class StreamDropPath(nn.Module):
    """x: (B, ...) -> x with whole samples' residual branch dropped with probability `drop_prob` (kept ones scaled
    by 1 / (1 - drop_prob)); identity outside `stochastic_depth` and outside training mode."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0:
            return hidden_states
        plan: DropPathPlan | None = getattr(_local, "plan", None)
        if plan is not None:
            return plan.apply(hidden_states, self.drop_prob)
        generator: torch.Generator | None = getattr(_local, "generator", None)
        if generator is None and not self.training:
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
