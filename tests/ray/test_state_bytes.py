"""A failover checkpoint (`state_bytes`) carries the adapter state and the tracker's, so a moved stream keeps its
adaptation and its persistent instance ids; a state of another method / preset is refused."""

from __future__ import annotations

import pytest
import torch

from server.ray_backend.state_bytes import load_state_bytes, state_bytes
from server.worker.stream_session import StreamSession
from tests.server.svc_helpers import FakeAdapter


def session(preset: str = "default") -> StreamSession:
    s = StreamSession("ws", "instance", "online", preset, "block", 4, lambda obj: None)
    s.adapter = FakeAdapter()
    return s


def test_adapter_and_tracker_state_survive_a_move() -> None:
    src = session()
    src.adapter.total, src.adapter.seen, src.processed = 12.5, [1.0, 2.0, 3.0], 3
    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks[0, :4], masks[1, 4:] = True, True
    ids = src.tracker.assign(torch.tensor([11, 12]), masks).tolist()
    dst = session()
    assert load_state_bytes(dst, state_bytes(src)) == {"frames": 3}
    assert dst.adapter.total == 12.5 and len(dst.adapter.seen) == 3
    assert ids == [1, 2]
    # the second object alone keeps its id (a fresh tracker would call it 1)
    assert dst.tracker.assign(torch.tensor([12]), masks[1:]).tolist() == [2]


def test_a_state_of_another_preset_is_refused() -> None:
    with pytest.raises(ValueError, match="preset=default"):
        load_state_bytes(session("fast"), state_bytes(session("default")))
