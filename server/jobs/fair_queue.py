"""The job queue: fair across owners (API keys), with a cap on each owner's running jobs.

`take()` hands out the oldest queued job of the owner served least recently among those below their running cap,
so owners take turns (round-robin) however many jobs each has queued: one key's long job or long backlog never
makes another key wait behind all of it.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque


class FairJobQueue:
    """Thread-safe queue of job ids per owner; `take()` blocks until a job may start, `done()` frees its slot."""

    def __init__(self, max_running_per_owner: int) -> None:
        self.max_running_per_owner = max_running_per_owner
        self._queued: dict[str, deque[str]] = {}
        self._running: dict[str, int] = {}
        self._last_served: dict[str, int] = {}  # owner -> tick of its last start (never served: -1)
        self._arrival: dict[str, int] = {}  # job id -> arrival tick (ties between never-served owners)
        self._owner_of: dict[str, str] = {}
        self._tick = itertools.count()
        self._cv = threading.Condition()
        self._closed = False

    def put(self, job_id: str, owner: str = "") -> None:
        """Queue `job_id` for `owner` (ignored if it is already queued)."""
        with self._cv:
            if job_id in self._owner_of:
                return
            self._queued.setdefault(owner, deque()).append(job_id)
            self._owner_of[job_id] = owner
            self._arrival[job_id] = next(self._tick)
            self._cv.notify_all()

    def remove(self, job_id: str) -> bool:
        """Take a queued job out of the queue; False if it was not queued."""
        with self._cv:
            owner = self._owner_of.pop(job_id, None)
            if owner is None:
                return False
            self._queued[owner].remove(job_id)
            self._arrival.pop(job_id, None)
            return True

    def _pick(self) -> tuple[str, str] | None:
        candidates = [
            (self._last_served.get(owner, -1), self._arrival[jobs[0]], owner)
            for owner, jobs in self._queued.items()
            if jobs and self._running.get(owner, 0) < self.max_running_per_owner
        ]
        if not candidates:
            return None
        _, _, owner = min(candidates)
        job_id = self._queued[owner].popleft()
        del self._owner_of[job_id], self._arrival[job_id]
        self._running[owner] = self._running.get(owner, 0) + 1
        self._last_served[owner] = next(self._tick)
        return job_id, owner

    def take(self, timeout: float | None = None) -> tuple[str, str] | None:
        """(job id, owner) of the next job to start, counted as running until `done(owner)`; None when closed
        or after `timeout` seconds without one."""
        with self._cv:
            picked: tuple[str, str] | None = None

            def ready() -> bool:
                nonlocal picked
                picked = None if self._closed else self._pick()
                return self._closed or picked is not None

            self._cv.wait_for(ready, timeout)
            return picked

    def done(self, owner: str) -> None:
        """A job of `owner` has stopped running: its slot is free for the owner's next job."""
        with self._cv:
            self._running[owner] = max(0, self._running.get(owner, 0) - 1)
            self._cv.notify_all()

    def queued(self, owner: str | None = None) -> int:
        """Jobs waiting (of `owner`, or of everyone)."""
        with self._cv:
            if owner is not None:
                return len(self._queued.get(owner, ()))
            return sum(len(q) for q in self._queued.values())

    def running(self, owner: str) -> int:
        """Jobs of `owner` started and not yet done."""
        with self._cv:
            return self._running.get(owner, 0)

    def close(self) -> None:
        """Wake every `take()` with None (shutdown); queued jobs stay on disk as `queued`."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()
