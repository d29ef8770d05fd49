"""What a stream's adapter saves and restores (`StreamAdapter.state_dict` / `load_state_dict`: a stream continued
exactly, across a checkpoint, a lane move or a Ray migration), and the memory it holds."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import torch

from mask2former_ttt.ttt.flat_params import flatten
from mask2former_ttt.ttt.stats import Theta0View

if TYPE_CHECKING:
    from mask2former_ttt.ttt.adapter import StreamAdapter


def save(a: StreamAdapter) -> dict[str, Any]:
    """Everything needed to continue the stream exactly: adapted tensors, optimizer, moving average, window, RNG,
    counters (tensors as name -> tensor, copies)."""
    return {
        "method": a.method,
        "config": a.cfg.model_dump(),
        "params": a.flat.state() if a.flat is not None else {},
        "optimizer": copy.deepcopy(a.optimizer.state_dict()) if a.optimizer is not None else None,
        "ema": a.flat.unflatten(a.average) if a.flat and a.average is not None else None,
        "window": [t.clone() for t in a.window],
        "generator": a.generator.get_state(),
        "frame_index": a.frame_index,
        "rollbacks": a.rollbacks,
        # the keys keep their established names, so saved streams and checkpoints stay loadable
        "loss_mean": a.divergence.level,
        "pending_step": a.pending is not None,
        "closed_frames": a.guard.shut_frames,
        "stepped": a.stepped,
    }


def load(a: StreamAdapter, state: dict[str, Any]) -> None:
    """Restore into `a` a stream saved by `save` (same model and method; ValueError otherwise)."""
    if state["method"] != a.method:
        raise ValueError(f"state is for method {state['method']!r}, this adapter is {a.method!r}")
    a.reset()
    if state["params"]:
        if set(state["params"]) != set(a.theta0):
            raise ValueError("state adapts other tensors than this adapter (another model or method)")
        a.ensure_params()
        assert a.flat is not None
        a.flat.copy_from({n: t.to(a.device) for n, t in state["params"].items()})
    if state["optimizer"] is not None:
        a.optimizer = a.new_optimizer()
        a.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
    if state.get("ema") and a.flat is not None:
        a.weight_average.set(flatten(state["ema"][n].to(a.device) for n in a.flat.order), a.flat)
    a.window.extend(t.to(a.device) for t in state["window"])
    a.generator.set_state(state["generator"])
    a.frame_index = state["frame_index"]
    a.rollbacks = state["rollbacks"]
    a.divergence.level = state["loss_mean"]
    a.pending = Theta0View(predicted=True) if state.get("pending_step") else None
    a.guard.shut_frames = int(state.get("closed_frames", 0))
    a.stepped = bool(state.get("stepped", bool(state["params"])))


def owned_tensors(a: StreamAdapter) -> list[torch.Tensor]:
    """Every tensor the stream owns (the shared model excluded): window, weights, gradients, average, optimizer."""
    tensors = list(a.window)
    if a.flat is not None:
        tensors.append(a.flat.data)
        if a.flat.grad is not None:
            tensors.append(a.flat.grad)
        else:
            tensors += [p.grad for p in a.params.values() if p.grad is not None]
    if a.average is not None:
        tensors.append(a.average)
    if a.optimizer is not None:
        for s in a.optimizer.state.values():
            tensors += [v for v in s.values() if torch.is_tensor(v)]
    return tensors


def estimated_bytes(a: StreamAdapter, frame_hw: tuple[int, int] | None = None) -> int:
    """Steady-state bytes of one stream before any frame arrives (admission control): the adapted weights, the
    optimizer state kept between frames, the moving average, and the window of frames of size `frame_hw`."""
    size = sum(t.numel() * t.element_size() for t in a.theta0.values()) if a.adapts else 0
    copies = 1
    if a.adapts and not a.cfg.reset_optimizer_each_frame:
        copies += 1 if a.cfg.optimizer == "sgd" else 2
    if a.adapts and a.guard.average_rate > 0:
        copies += 1
    if a.wants_step_executor:
        copies += 1  # the published set the predictions read (ttt/published.py)
    h, w = frame_hw or (a.model.cfg.image_size, a.model.cfg.image_size)
    return size * copies + a.cfg.window * 3 * h * w
