"""The stream registry: which actor owns each stream (single writer), and placement of new streams by load.

A plain class run as a named Ray actor (`REGISTRY_NAME-<front-end id>`): each front-end owns its set of device-worker
actors and its registry, so several front-end replicas on one cluster never mix their actor indexes."""

from __future__ import annotations

from typing import Any, Sequence

REGISTRY_NAME = "m2f-ttt-stream-registry"


class NoLiveActor(RuntimeError):
    """Every device-worker actor is dead or excluded."""


class StreamRegistry:
    """stream id -> actor index; a new stream goes to the live actor owning the fewest streams (lowest index on
    ties)."""

    def __init__(self, actors: int) -> None:
        if actors < 1:
            raise ValueError(f"need at least one actor, got {actors}")
        self.actors = actors
        self.owner: dict[str, int] = {}
        self.dead: set[int] = set()

    def loads(self) -> list[int]:
        """Streams owned by each actor (dead ones included, until their streams move)."""
        counts = [0] * self.actors
        for index in self.owner.values():
            counts[index] += 1
        return counts

    def place(self, stream_id: str, exclude: Sequence[int] = ()) -> int:
        """Assign `stream_id` (new, or moving off a dead actor) to the least-loaded live actor not in `exclude`."""
        counts = self.loads()
        candidates = [i for i in range(self.actors) if i not in self.dead and i not in exclude]
        if not candidates:
            raise NoLiveActor(f"no live device-worker actor (dead: {sorted(self.dead)}, excluded: {list(exclude)})")
        index = min(candidates, key=lambda i: (counts[i], i))
        self.owner[stream_id] = index
        return index

    def owner_of(self, stream_id: str) -> int | None:
        return self.owner.get(stream_id)

    def release(self, stream_id: str) -> None:
        self.owner.pop(stream_id, None)

    def mark_dead(self, index: int) -> list[str]:
        """Record that actor `index` died; returns the streams it owned (they must be re-placed)."""
        self.dead.add(index)
        return sorted(s for s, i in self.owner.items() if i == index)

    def snapshot(self) -> dict[str, Any]:
        return {"owner": dict(self.owner), "dead": sorted(self.dead), "loads": self.loads()}


def registry_actor(actors: int, frontend_id: str) -> Any:
    """The named registry actor, created if absent (no CPU reserved: it only holds a dict)."""
    import ray

    return (
        ray.remote(StreamRegistry)
        .options(name=f"{REGISTRY_NAME}-{frontend_id}", get_if_exists=True, num_cpus=0, lifetime=None)
        .remote(actors)
    )
