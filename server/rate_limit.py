"""Per-key request budgets: a token bucket per API key id (`burst` requests at once, refilled at `per_minute`)."""

from __future__ import annotations

import threading
import time
from typing import Callable

MAX_KEYS = 10_000  # buckets kept; the fullest (least useful) are forgotten first past this


class RateLimiter:
    """Token buckets by key; `take(key)` spends one token or says how long until one is back."""

    def __init__(self, per_minute: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        if per_minute <= 0 or burst < 1:
            raise ValueError(f"a rate limit needs per_minute > 0 and burst >= 1, got {per_minute}, {burst}")
        self.rate_s = per_minute / 60.0
        self.burst = float(burst)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when)
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0.0 if `key` may go ahead now (a token is spent); else the seconds until it may."""
        with self._lock:
            now = self.clock()
            tokens, when = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - when) * self.rate_s)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                if len(self._buckets) > MAX_KEYS:
                    fullest = max(self._buckets, key=lambda k: self._buckets[k][0])
                    del self._buckets[fullest]
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate_s
