"""Admission control: how many streams, and how much per-stream state memory, the device takes.

Each admitted stream reserves its adapter's own steady-state estimate, or the largest footprint measured so far
for streams of the same method and preset, whichever is larger; the reservation grows if the stream's measured
memory ever exceeds it.
"""

from __future__ import annotations

from collections.abc import Collection

from mask2former_ttt.ttt.protocol import Adapter
from server.metrics import Metrics
from server.worker.stream_session import StreamSession


class CapacityError(RuntimeError):
    """A new stream does not fit. `reason` is `streams` or `memory`; the message says what is full."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class QuotaError(CapacityError):
    """The stream's owner (API key) already holds its limit of live streams; others may still get in."""

    def __init__(self, message: str) -> None:
        super().__init__("key_streams", message)


class Admission:
    """Stream-count and memory limits over the sessions the worker holds."""

    def __init__(
        self, metrics: Metrics, max_streams: int, max_state_memory: int, max_streams_per_owner: int | None = None
    ) -> None:
        self.metrics = metrics
        self.max_streams = max_streams
        self.max_streams_per_owner = max_streams_per_owner  # None: no per-key limit (auth off)
        self.max_state_memory = max_state_memory
        self._peak_bytes: dict[tuple[str, str], int] = {}

    @staticmethod
    def reserved_bytes(sessions: Collection[StreamSession]) -> int:
        return sum(s.reserved_bytes for s in list(sessions))

    def check_count(self, sessions: Collection[StreamSession], session: StreamSession | None = None) -> None:
        """CapacityError("streams") when every stream slot is taken; QuotaError when `session`'s owner already
        holds `max_streams_per_owner` live streams (upload jobs have their own per-key limit)."""
        sessions = list(sessions.values()) if isinstance(sessions, dict) else list(sessions)
        limit = self.max_streams_per_owner
        if limit is not None and session is not None and session.source != "job":
            mine = sum(1 for s in sessions if s.owner == session.owner and s.source != "job" and s is not session)
            if mine >= limit:
                self.metrics.refusals.labels("key_streams").inc()
                raise QuotaError(
                    f"this API key already has {mine} live streams, its limit (M2F_STREAMS_MAX_PER_KEY={limit}); "
                    "close one first"
                )
        if len(sessions) >= self.max_streams:
            self.metrics.refusals.labels("streams").inc()
            raise CapacityError(
                "streams",
                f"the service is full: {len(sessions)} of {self.max_streams} streams are active; try again later",
            )

    def reserve(self, sessions: Collection[StreamSession], session: StreamSession, adapter: Adapter) -> int:
        """Bytes to reserve for `session` running `adapter`; CapacityError when a slot or the memory is missing."""
        self.check_count(sessions, session)
        need = max(int(adapter.estimated_memory_bytes()), self._peak_bytes.get((session.method, session.preset), 0))
        used = self.reserved_bytes(sessions)
        if used + need > self.max_state_memory:
            self.metrics.refusals.labels("memory").inc()
            raise CapacityError(
                "memory",
                f"not enough memory for another stream: {used} of {self.max_state_memory} bytes are reserved by "
                f"{len(sessions)} streams and this one needs about {need}; try again later",
            )
        return need

    def observe(self, session: StreamSession, memory_bytes: int) -> None:
        """Record a stream's measured memory: its reservation and its method's peak never fall below it."""
        session.memory_bytes = memory_bytes
        session.reserved_bytes = max(session.reserved_bytes, memory_bytes)
        key = (session.method, session.preset)
        self._peak_bytes[key] = max(self._peak_bytes.get(key, 0), memory_bytes)

    def capacity(self, sessions: Collection[StreamSession]) -> dict:
        """Streams and memory in use vs limits; `available` tells whether one more stream is likely to fit."""
        used = self.reserved_bytes(sessions)
        typical = max(self._peak_bytes.values(), default=0)
        return {
            "streams": len(sessions),
            "max_streams": self.max_streams,
            "reserved_bytes": used,
            "max_state_memory": self.max_state_memory,
            "available": len(sessions) < self.max_streams and used + typical <= self.max_state_memory,
        }
