"""Retry backoff shared by the live reader's reconnects and the service's job webhooks: full-jitter exponential
waits, tenacity's `wait_random_exponential` - the wait after the n-th consecutive failure is
``uniform(0, min(cap, initial * 2**(n-1)))``.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

from tenacity import RetryCallState, wait_random_exponential

NO_CAP = sys.maxsize / 2  # tenacity's own "no maximum"


class Backoff:
    """Full-jitter exponential backoff from `initial_s`, capped at `cap_s` (none by default)."""

    def __init__(self, initial_s: float, cap_s: float = NO_CAP) -> None:
        if initial_s < 0 or cap_s < 0:
            raise ValueError(f"backoff needs initial_s >= 0 and cap_s >= 0, got {initial_s}, {cap_s}")
        self.initial_s = float(initial_s)
        self.cap_s = float(cap_s)
        self.wait = wait_random_exponential(multiplier=self.initial_s, max=self.cap_s)  # a tenacity wait strategy

    def delay(self, failures: int) -> float:
        """Seconds to wait after `failures` (>= 1) consecutive failures."""
        state = RetryCallState(None, None, (), {})  # type: ignore[arg-type] - only the attempt number is read
        state.attempt_number = max(1, failures)
        return self.wait(state)

    def attempts(self, max_attempts: int, stop: threading.Event) -> Iterator[int]:
        """Attempt numbers 1 .. `max_attempts`, waiting `delay(n)` before attempt n + 1 (not after the last); ends
        early when `stop` is set during a wait. The caller returns from its loop on success."""
        attempt = 1
        while True:
            yield attempt
            if attempt >= max_attempts or stop.wait(self.delay(attempt)):
                return
            attempt += 1


__all__ = ["Backoff"]
