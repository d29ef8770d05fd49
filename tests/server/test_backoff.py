"""The one retry backoff (`mask2former_ttt.live.backoff.Backoff`) of camera reconnects and job webhooks."""

from __future__ import annotations

import random
import threading

import pytest

from mask2former_ttt.live.backoff import Backoff


@pytest.mark.parametrize("initial, cap", [(0.5, 2.0), (1.0, Backoff(1.0).cap_s)])
def test_delays_are_full_jitter_doubling_up_to_the_cap(initial: float, cap: float) -> None:
    random.seed(0)
    backoff = Backoff(initial, cap)
    for failures in range(1, 8):
        ceiling = min(cap, initial * 2 ** (failures - 1))
        draws = [backoff.delay(failures) for _ in range(400)]
        assert 0.0 <= min(draws) and max(draws) <= ceiling
        assert max(draws) > 0.9 * ceiling and min(draws) < 0.1 * ceiling  # spread over the whole range


def test_attempts_count_up_to_the_limit_without_a_wait_after_the_last() -> None:
    waits: list[float] = []

    class Recording(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            waits.append(timeout)
            return False

    backoff = Backoff(0.01)
    assert list(backoff.attempts(4, Recording())) == [1, 2, 3, 4]
    assert len(waits) == 3 and all(0.0 <= w <= 0.01 * 2 ** i for i, w in enumerate(waits))


def test_attempts_end_when_stopped_during_a_wait() -> None:
    stop = threading.Event()
    stop.set()
    assert list(Backoff(10.0).attempts(5, stop)) == [1]


def test_a_refusing_camera_is_retried_with_the_backoff_then_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from mask2former_ttt.live.reader import LiveReader
    from mask2former_ttt.live.state import SourceState

    asked: list[int] = []
    real = Backoff.delay

    def spy(self: Backoff, failures: int) -> float:
        asked.append(failures)
        assert (self.initial_s, self.cap_s) == (0.01, 0.02)
        return real(self, failures)

    monkeypatch.setattr(Backoff, "delay", spy)
    with socket.socket() as closed_port:  # bound, not listening: connections are refused
        closed_port.bind(("127.0.0.1", 0))
        url = f"rtsp://127.0.0.1:{closed_port.getsockname()[1]}/cam"
        reader = LiveReader(url, open_timeout_s=2.0, backoff_initial_s=0.01, backoff_max_s=0.02, max_failures=3)
        assert list(reader.frames()) == []
    assert reader.state is SourceState.FAILED and reader.stats.connect_failures == 3
    assert asked == [1, 2]  # a wait after each failed attempt but the last
