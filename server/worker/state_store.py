"""Stream state files: a stream's adapted state saved under an id, and loaded back into a stream of the same
method and preset by the same API key. Ids are validated before they become paths, so a client cannot name any
other file; ownership and quotas live in :class:`~server.worker.checkpoint_index.CheckpointIndex`."""

from __future__ import annotations

import logging
import re
import time
import uuid
from pathlib import Path

import torch

from server.logging_setup import kv
from server.worker.checkpoint_index import CheckpointIndex, CheckpointNotFound, CheckpointRecord, Owns
from server.worker.stream_session import StreamSession

log = logging.getLogger(__name__)

CHECKPOINT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# /2: optimizer state per flat optimizer group (mask2former_ttt/ttt/flat_params.py), not per tensor
STATE_FORMAT = "m2f-ttt-stream-state/2"


def state_blob(session: StreamSession, tracker: bool = False) -> dict:
    """What a stream state file holds: `{"format", "method", "preset", "frames", "state"}` (adapter state_dict),
    and with `tracker` the tracker's state too (so persistent instance ids continue: job resume, Ray failover)."""
    blob = {
        "format": STATE_FORMAT,
        "method": session.method,
        "preset": session.preset,
        "frames": session.processed,
        "state": session.adapter.state_dict(),
    }
    if tracker:
        blob["tracker"] = session.tracker.state_dict()
    return blob


def load_tracker(session: StreamSession, blob: dict) -> None:
    """Continue the tracker a `state_blob(..., tracker=True)` saved (a blob without one leaves it as it is)."""
    if isinstance(blob.get("tracker"), dict):
        session.tracker.load_state_dict(blob["tracker"])


def _same_owner(owner: str) -> Owns:
    return lambda recorded: recorded == owner


class StreamStateStore:
    """`states_dir/<checkpoint_id>.pt` files holding `{"format", "method", "preset", "frames", "state"}`, each with
    an owner sidecar (see `CheckpointIndex` for the per-stream count, per-key bytes and retention limits)."""

    def __init__(
        self, states_dir: Path, per_stream: int = 3, bytes_per_key: int = 1 << 30, retention_s: float = 3600.0
    ) -> None:
        self.states_dir = Path(states_dir)
        self.index = CheckpointIndex(self.states_dir, per_stream, bytes_per_key, retention_s)

    def save(self, session: StreamSession, blob: dict | None = None) -> dict:
        """Save the session's adapter state (or `blob`, a `state_blob` taken elsewhere: a Ray actor) under a new id
        owned by the session's owner; returns `{checkpoint_id, bytes, frames}`. CheckpointQuotaError when the
        owner's byte quota is used up."""
        checkpoint_id = f"{session.id}-{uuid.uuid4().hex[:8]}"
        self.states_dir.mkdir(parents=True, exist_ok=True)
        path = self.states_dir / f"{checkpoint_id}.pt"
        torch.save(state_blob(session) if blob is None else blob, path)
        size = path.stat().st_size
        record = CheckpointRecord(
            checkpoint_id=checkpoint_id, owner=session.owner, stream_id=session.id, bytes=size,
            frames=session.processed, method=session.method, preset=session.preset, created=time.time(),
        )
        self.index.admit(record)
        log.info("stream checkpoint", extra=kv(stream=session.id, checkpoint=checkpoint_id, bytes=size))
        return {"checkpoint_id": checkpoint_id, "bytes": size, "frames": session.processed}

    def path(self, checkpoint_id: str, owns: Owns) -> Path:
        """Path of a checkpoint the caller may read; ValueError for ids that are not ours (no path tricks),
        CheckpointNotFound for unknown ids and other keys' checkpoints."""
        if not CHECKPOINT_ID.match(checkpoint_id or ""):
            raise ValueError("checkpoint_id must be 1-64 characters of A-Z a-z 0-9 _ -")
        self.index.get(checkpoint_id, owns)
        path = self.states_dir / f"{checkpoint_id}.pt"
        if not path.is_file():
            raise CheckpointNotFound(f"no checkpoint {checkpoint_id!r}")
        return path

    def restore(self, session: StreamSession, checkpoint_id: str, owns: Owns | None = None) -> dict:
        """Load a saved state into the session's adapter. `owns` decides whose checkpoints the caller may use
        (default: the session owner's only). ValueError if it is not a stream state or was saved by another method
        or preset. Returns `{checkpoint_id, frames}`."""
        blob = self.load(session, checkpoint_id, owns)
        session.adapter.load_state_dict(blob["state"])
        return {"checkpoint_id": checkpoint_id, "frames": blob["frames"]}

    def load(self, session: StreamSession, checkpoint_id: str, owns: Owns | None = None) -> dict:
        """The checked `state_blob` of a checkpoint `session` may load (see `restore`), without loading it."""
        path = self.path(checkpoint_id, owns or _same_owner(session.owner))
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(blob, dict) or not str(blob.get("format", "")).startswith("m2f-ttt-stream-state/"):
            raise ValueError(f"checkpoint {checkpoint_id!r} is not a stream state")
        if blob["format"] != STATE_FORMAT:
            raise ValueError(
                f"checkpoint {checkpoint_id!r} was saved in format {blob['format']!r} by an older version; this "
                f"version reads {STATE_FORMAT!r}: start the stream afresh"
            )
        if (blob["method"], blob["preset"]) != (session.method, session.preset):
            raise ValueError(
                f"checkpoint {checkpoint_id!r} is for method={blob['method']} preset={blob['preset']}, "
                f"this stream runs method={session.method} preset={session.preset}"
            )
        return blob
