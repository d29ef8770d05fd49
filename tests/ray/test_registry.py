"""The stream registry on its own (no Ray): placement by load, dead actors excluded, their streams listed."""

from __future__ import annotations

import pytest

from server.ray_backend.registry import NoLiveActor, StreamRegistry


def test_new_streams_go_to_the_least_loaded_live_actor() -> None:
    reg = StreamRegistry(3)
    assert [reg.place(f"s{i}") for i in range(5)] == [0, 1, 2, 0, 1]
    reg.release("s0")
    assert reg.place("s5") == 0 and reg.loads() == [2, 2, 1]
    assert reg.place("s6") == 2


def test_a_dead_actors_streams_are_listed_and_placed_elsewhere() -> None:
    reg = StreamRegistry(2)
    for i in range(4):
        reg.place(f"s{i}")
    assert reg.mark_dead(0) == ["s0", "s2"]
    assert [reg.place(s) for s in ("s0", "s2")] == [1, 1]
    assert reg.snapshot() == {"owner": {"s0": 1, "s1": 1, "s2": 1, "s3": 1}, "dead": [0], "loads": [0, 4]}
    reg.mark_dead(1)
    with pytest.raises(NoLiveActor, match="no live device-worker actor"):
        reg.place("s4")
