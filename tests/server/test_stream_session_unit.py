"""StreamSession and its queue items on their own: which processed frames carry the TTT view, a control's reply
by default, and what an in-memory frame reports as decode time."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mask2former_ttt.ttt import view as view_module
from server.events import ControlReply
from server.worker.controls import StreamControls
from server.worker.scheduler import Scheduler
from server.worker.state_store import StreamStateStore
from server.worker.stream_session import ControlItem, StreamSession


@pytest.fixture
def views(monkeypatch) -> list[int]:
    """Replaces the TTT view's computation with a recorder of the frames' mean values (adapter-free)."""
    seen: list[int] = []

    def fake_view(adapter, frame: torch.Tensor):  # noqa: ANN001
        seen.append(int(frame.float().mean()))
        return f"view of {int(frame.float().mean())}"

    monkeypatch.setattr(view_module, "reconstruction_view", fake_view)
    return seen


def processed_frames(s: StreamSession, n: int) -> list:
    """`ttt_view` after each of n processed frames (frame k is filled with k)."""
    out = []
    for k in range(n):
        s.processed += 1  # as the lane counts a frame before building its result
        out.append(s.ttt_view(torch.full((3, 4, 4), k, dtype=torch.uint8)))
    return out


def test_a_stream_carries_no_ttt_view_unless_asked(views) -> None:
    s = StreamSession("ws", "semantic", "online", "default", "latest", 2, lambda obj: None)
    assert processed_frames(s, 3) == [None, None, None]
    assert views == []  # nothing computed


def test_the_ttt_view_comes_with_the_first_frame_and_every_nth_after_it(views) -> None:
    s = StreamSession("ws", "semantic", "online", "default", "latest", 2, lambda obj: None, ttt_view_every=3)
    assert processed_frames(s, 7) == ["view of 0", None, None, "view of 3", None, None, "view of 6"]
    assert views == [0, 3, 6]


def test_a_control_replies_to_its_stream_unless_it_is_internal(tmp_path: Path) -> None:
    replies: list = []
    s = StreamSession("ws", "semantic", "online", "default", "latest", 2, replies.append, session_id="s")
    controls = StreamControls(Scheduler(), StreamStateStore(tmp_path))
    controls.run(s, ControlItem("probe", lambda sess: {"ok": True}))
    controls.run(s, ControlItem("move_lane", lambda sess: {"lane": 1}, notify=False))
    assert replies == [ControlReply("s", "probe", {"ok": True})]
