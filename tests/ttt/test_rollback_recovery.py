"""After a rollback the stream re-learns its loss level: a long stream that leaves an easy domain (ℓ_s far below
its clean level) must not roll back on every frame from then on (the 5,000-frame cycle stream did, from frame
2,019 on, before the fix: scripts/long_stream.py)."""

from __future__ import annotations

import torch

from mask2former_ttt.ttt.adapter import StreamAdapter
from mask2former_ttt.ttt.config import ttt_preset
from mask2former_ttt.ttt.objectives import mae_loss


def test_one_rollback_when_the_loss_level_jumps_then_adaptation_resumes(tiny_model) -> None:
    scale = {"value": 0.01}  # an easy domain: ℓ_s at 1 % of its usual level

    def objective(forward, x, cfg, generator):  # noqa: ANN001, ANN202
        return mae_loss(forward, x, cfg, generator) * scale["value"]

    cfg = ttt_preset("full", batch_size=1, micro_batch=1, guard=None)
    a = StreamAdapter(tiny_model, cfg, seed=0, objective=objective)
    g = torch.Generator().manual_seed(0)
    frames = [(torch.rand(3, 64, 80, generator=g) * 255).to(torch.uint8) for _ in range(4)]
    for t in range(8):
        a.step(frames[t % 4])
    assert a.rollbacks == 0
    scale["value"] = 1.0  # back to the usual level: 100x the running mean, far past EXPLODE_FACTOR
    rolled = [a.step(frames[t % 4]).stats.rolled_back for t in range(6)]
    assert rolled[0] and not any(rolled[1:]), rolled
    assert a.rollbacks == 1 and a.divergence.level is not None
