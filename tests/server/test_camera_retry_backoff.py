"""A camera's reconnect waits grow exponentially to a 60 s cap and end `failed` after the retry time (virtual time)."""

from __future__ import annotations

import random

import pytest

from mask2former_ttt.live.diagnosis import LiveConnectError
from mask2former_ttt.live.reader import LiveReader
from mask2former_ttt.live.state import SourceState
from server import rtsp_streams


class VirtualTime:
    """A clock that only moves when the reader waits; the waits are recorded."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.now += seconds
        return False


def refuse(url: str, timeout: float) -> None:
    raise LiveConnectError("connection refused by 10.0.0.5:554 (nothing is listening there)")


def test_waits_double_up_to_the_cap_and_the_camera_fails_after_the_retry_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(random, "uniform", lambda low, high: high)  # full jitter at its upper bound
    t = VirtualTime()
    states: list[SourceState] = []
    reader = LiveReader("rtsp://10.0.0.5/cam", backoff_initial_s=0.5, backoff_max_s=rtsp_streams.CAMERA_BACKOFF_MAX_S,
                        max_outage_s=3600.0, dialer=refuse, clock=t.clock, wait=t.wait, on_state=states.append)
    assert list(reader.frames()) == []
    assert t.waits[:9] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    assert max(t.waits) == 60.0 and sum(t.waits) == pytest.approx(3600.0)
    assert states[-2:] == [SourceState.RECONNECTING, SourceState.FAILED]
    assert reader.stats.last_error.startswith("gave up after 3600.0 s without a frame")
