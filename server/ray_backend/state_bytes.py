"""A stream's adapted state as bytes (the stream state file format of `server.worker.state_store`, in memory), so a
checkpoint can travel between Ray processes without shared storage."""

from __future__ import annotations

import io

import torch

from server.worker.state_store import STATE_FORMAT, load_tracker, state_blob
from server.worker.stream_session import StreamSession


def state_bytes(session: StreamSession) -> bytes:
    """`torch.save` of `state_blob(session)` (`{format, method, preset, frames, state}`) and the stream's tracker
    state (so persistent instance ids survive a move); worker lane only."""
    buf = io.BytesIO()
    torch.save(state_blob(session, tracker=True), buf)
    return buf.getvalue()


def load_state_bytes(session: StreamSession, data: bytes) -> dict:
    """Load bytes made by `state_bytes` into the session's adapter (worker lane only); ValueError when they are not
    a stream state of this format, method and preset. Returns `{frames}`: the frames the state had seen."""
    blob = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or blob.get("format") != STATE_FORMAT:
        raise ValueError(f"not a stream state in format {STATE_FORMAT!r}")
    if (blob["method"], blob["preset"]) != (session.method, session.preset):
        raise ValueError(
            f"state is for method={blob['method']} preset={blob['preset']}, "
            f"this stream runs method={session.method} preset={session.preset}"
        )
    session.adapter.load_state_dict(blob["state"])
    load_tracker(session, blob)
    return {"frames": int(blob["frames"])}
