"""One connection attempt to a camera URL, for `POST /v1/streams/test`: does it give a frame, and if not, why.

The attempt is the one a camera stream makes (the same source class, so the same address policy, relay and
redirect refusal), with one try and no reconnects, bounded by the open and stall timeouts.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable, Sequence

#: Seconds past the open and stall timeouts that the probe waits for the source to say how it went.
GRACE_S = 2.0


@dataclass(frozen=True)
class ProbeOutcome:
    """`ok`: a frame was decoded; `stats`: the source's counters (codec, size, fps, the diagnosis in last_error)."""

    ok: bool
    stats: Any


def probe_camera(
    url: str,
    source_factory: Callable[..., Any],
    allowed_hosts: Sequence[str] | None,
    open_timeout_s: float,
    stall_timeout_s: float,
) -> ProbeOutcome:
    """Open `url` once (blocking: run it in a thread); ValueError if the URL is not allowed."""
    settled = threading.Event()

    def on_state(state: Any) -> None:
        if getattr(state, "value", str(state)) in ("running", "failed", "stopped"):
            settled.set()

    source = source_factory(
        url=url, on_frame=lambda *_: settled.set(), max_fps=None, open_timeout_s=open_timeout_s,
        stall_timeout_s=stall_timeout_s, backoff_max_s=0.5, max_failures=1, allowed_hosts=allowed_hosts,
        on_state=on_state,
    )
    source.start()
    try:
        settled.wait(open_timeout_s + stall_timeout_s + GRACE_S)
        state = getattr(source.state, "value", str(source.state))
        stats = source.stats
        ok = state == "running" or int(getattr(stats, "frames", 0) or 0) > 0
        return ProbeOutcome(ok, stats)
    finally:
        source.stop(1.0)
