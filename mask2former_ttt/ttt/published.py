"""The weights a stream's predictions read in the asynchronous schedule: one immutable set, published whole.

The step executor (ttt/step_executor.py) trains the stream's private tensors; after a step it copies what the
guard has the stream predict with (θ0, the moving average or the latest weights: `Guard.predictor`) into new
tensors and publishes them as a new `PublishedWeights` by a single reference assignment. A prediction reads that
reference once per frame, so it runs on one complete set, never on a set half-way through an update.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Mapping

import torch

from mask2former_ttt.ttt.stats import StepStats

if TYPE_CHECKING:
    from mask2former_ttt.ttt.adapter import StreamAdapter

_EMPTY: Mapping[str, torch.Tensor] = MappingProxyType({})


@dataclass(frozen=True)
class PublishedWeights:
    """One published set. `tensors`: name -> tensor the prediction runs with (empty: θ0, the shared weights),
    views of one flat (N,) buffer no one writes after publishing; `theta0`: whether θ0 predicts; `version`: steps
    published since the stream's start or reset (0: θ0, before any step); `step`: the statistics of the step that
    produced it; `steps_total`: the stream's optimizer steps taken on the executor so far; `rollbacks` and
    `memory_bytes`: the stream's counters when it was published."""

    version: int = 0
    tensors: Mapping[str, torch.Tensor] = field(default_factory=lambda: _EMPTY)
    theta0: bool = True
    step: StepStats | None = None
    steps_total: int = 0
    rollbacks: int = 0
    memory_bytes: int = 0


@torch.no_grad()
def snapshot(adapter: StreamAdapter, version: int, step: StepStats | None, steps_total: int = 0) -> PublishedWeights:
    """What `adapter` predicts with now, copied (the caller owns the adapter's training state: the executor thread
    after a step, or the stream's thread after a quiesce)."""
    predictor = adapter.guard.predictor(adapter.stepped, adapter.average is not None)
    tensors = _EMPTY
    if predictor != "theta0" and adapter.flat is not None:
        source = adapter.average if predictor == "average" and adapter.average is not None else adapter.flat.data
        copy = source.detach().clone()  # (N,): the new set's one buffer
        if copy.is_cuda:
            torch.cuda.current_stream(copy.device).synchronize()  # complete before any other stream reads it
        tensors = MappingProxyType(adapter.flat.views(copy))
    own = sum(t.numel() * t.element_size() for t in _owned(adapter))
    published = sum(t.numel() * t.element_size() for t in tensors.values())
    return PublishedWeights(version, tensors, predictor == "theta0" or not tensors, step, steps_total,
                            adapter.rollbacks, own + published)


def _owned(adapter: StreamAdapter) -> list[torch.Tensor]:
    from mask2former_ttt.ttt.stream_state import owned_tensors

    return owned_tensors(adapter)
