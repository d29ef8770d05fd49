"""Run the same streams twice, each on its own `step` and all through the batched service path
(ttt/cross_stream.py), to compare what they give."""

from __future__ import annotations

import torch

from mask2former_ttt.ttt.cross_stream import finish_pending_many, step_many
from mask2former_ttt.ttt.methods import build_adapter


def run_serial_and_batched(model, clips: list[list[torch.Tensor]], preset: str, method: str = "online", **overrides):
    """clips[i]: stream i's frames (3, H, W) uint8, all of one length -> (serial adapters, batched adapters, per
    frame and stream (serial StepResult, batched StepResult)); stream i has seed i on both sides."""
    serial = [build_adapter(model, method, preset, seed=i, **overrides) for i in range(len(clips))]
    batched = [build_adapter(model, method, preset, seed=i, **overrides) for i in range(len(clips))]
    pairs = []
    for t in range(len(clips[0])):
        want = []
        for a, clip in zip(serial, clips):
            want.append(a.step(clip[t]))
            a.finish_pending()
        got = step_many(batched, [clip[t] for clip in clips])
        finish_pending_many(batched)
        pairs += list(zip(want, got))
    return serial, batched, pairs
