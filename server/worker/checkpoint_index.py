"""Who owns which stream checkpoint, and the limits on them.

Every checkpoint `states_dir/<id>.pt` has a sidecar `<id>.json` recording its owner (an API key id, never the key),
stream, size and, once the stream has ended, when it ended. The index enforces:

- `per_stream`: a stream keeps at most this many checkpoints; saving one more evicts its oldest;
- `bytes_per_key`: one owner's checkpoints together stay under this many bytes; a save that would pass it first
  evicts the owner's oldest checkpoints of streams that have ended, and is refused if that is not enough;
- `retention_s`: checkpoints of a stream that ended are deleted this long after it ended (0: at once), so a client
  that reconnects can still restore, but files never outlive their streams for good.

A service restart ends every stream: sidecars without an end time are stamped with the start-up time.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable

from pydantic import BaseModel

from server.logging_setup import kv

log = logging.getLogger(__name__)
Owns = Callable[[str], bool]  # True if the caller may see a record of this owner (server.auth.Principal.owns)


class CheckpointNotFound(LookupError):
    """No such checkpoint, or it belongs to another API key (the two are indistinguishable to the caller)."""


class CheckpointQuotaError(RuntimeError):
    """Saving would pass the owner's checkpoint byte quota even after evicting ended streams' checkpoints."""


class CheckpointInfo(BaseModel):
    """What `GET /v1/checkpoints` shows of a checkpoint (no owner: callers only ever see their own)."""

    checkpoint_id: str
    stream_id: str
    bytes: int
    frames: int
    method: str
    preset: str
    created: float
    ended: float | None = None


class CheckpointRecord(CheckpointInfo):
    """Sidecar of one checkpoint file: its public info and its owner (an API key id)."""

    owner: str

    def public(self) -> CheckpointInfo:
        return CheckpointInfo(**self.model_dump(exclude={"owner"}))


class CheckpointIndex:
    """Thread-safe sidecar index over `states_dir` (lanes save concurrently)."""

    def __init__(
        self, states_dir: Path, per_stream: int = 3, bytes_per_key: int = 1 << 30, retention_s: float = 3600.0
    ) -> None:
        self.dir = Path(states_dir)
        self.per_stream = per_stream
        self.bytes_per_key = bytes_per_key
        self.retention_s = retention_s
        self._lock = threading.Lock()
        self._records: dict[str, CheckpointRecord] = {}
        self._load()

    def _load(self) -> None:
        now = time.time()
        for path in sorted(self.dir.glob("*.json")) if self.dir.is_dir() else []:
            try:
                rec = CheckpointRecord.model_validate_json(path.read_text())
            except (OSError, ValueError, TypeError) as exc:
                log.warning("unreadable checkpoint record skipped", extra=kv(path=str(path), error=str(exc)))
                continue
            if not self._blob(rec.checkpoint_id).is_file():
                path.unlink(missing_ok=True)
                continue
            if rec.ended is None:  # its stream died with the previous process
                rec.ended = now
                self._write(rec)
            self._records[rec.checkpoint_id] = rec
        self.sweep()

    def _blob(self, checkpoint_id: str) -> Path:
        return self.dir / f"{checkpoint_id}.pt"

    def _write(self, rec: CheckpointRecord) -> None:
        tmp = self.dir / f".{rec.checkpoint_id}.json.tmp"
        tmp.write_text(rec.model_dump_json())
        os.replace(tmp, self.dir / f"{rec.checkpoint_id}.json")

    def _drop(self, checkpoint_id: str, why: str) -> None:
        rec = self._records.pop(checkpoint_id, None)
        self._blob(checkpoint_id).unlink(missing_ok=True)
        (self.dir / f"{checkpoint_id}.json").unlink(missing_ok=True)
        if rec is not None:
            log.info("stream checkpoint removed", extra=kv(checkpoint=checkpoint_id, owner=rec.owner, why=why))

    def get(self, checkpoint_id: str, owns: Owns) -> CheckpointRecord:
        """The record if `owns(record.owner)`; CheckpointNotFound otherwise."""
        with self._lock:
            rec = self._records.get(checkpoint_id)
        if rec is None or not owns(rec.owner):
            raise CheckpointNotFound(f"no checkpoint {checkpoint_id!r}")
        return rec

    def visible(self, owns: Owns) -> list[CheckpointRecord]:
        """Records whose owner passes `owns`, oldest first."""
        self.sweep()
        with self._lock:
            return sorted((r for r in self._records.values() if owns(r.owner)), key=lambda r: r.created)

    def admit(self, rec: CheckpointRecord) -> None:
        """Register a checkpoint whose blob was just written: evict to stay within the limits, or remove the blob
        and raise CheckpointQuotaError when the owner's byte quota cannot be met."""
        with self._lock:
            mine = sorted((r for r in self._records.values() if r.owner == rec.owner), key=lambda r: r.created)
            used = sum(r.bytes for r in mine)
            for old in [r for r in mine if r.ended is not None]:
                if used + rec.bytes <= self.bytes_per_key:
                    break
                self._drop(old.checkpoint_id, "key byte quota")
                used -= old.bytes
            if used + rec.bytes > self.bytes_per_key:
                self._blob(rec.checkpoint_id).unlink(missing_ok=True)
                raise CheckpointQuotaError(
                    f"checkpoint quota exceeded: this API key's checkpoints use {used} bytes and this one needs "
                    f"{rec.bytes} more (M2F_CHECKPOINT_BYTES_PER_KEY={self.bytes_per_key}); delete some with "
                    "DELETE /v1/checkpoints/{id}"
                )
            self._records[rec.checkpoint_id] = rec
            self._write(rec)
            same = sorted((r for r in self._records.values() if r.stream_id == rec.stream_id), key=lambda r: r.created)
            for old in same[: max(0, len(same) - self.per_stream)]:
                self._drop(old.checkpoint_id, "per-stream limit")

    def delete(self, checkpoint_id: str, owns: Owns) -> None:
        """Delete one checkpoint; CheckpointNotFound if it is unknown or not the caller's."""
        self.get(checkpoint_id, owns)
        with self._lock:
            self._drop(checkpoint_id, "deleted by its owner")

    def stream_ended(self, stream_id: str) -> None:
        """Start the retention clock of the stream's checkpoints (deleted at once with `retention_s` 0)."""
        now = time.time()
        with self._lock:
            for rec in [r for r in self._records.values() if r.stream_id == stream_id and r.ended is None]:
                rec.ended = now
                self._write(rec)
        self.sweep()

    def sweep(self) -> None:
        """Delete checkpoints whose stream ended more than `retention_s` ago."""
        cutoff = time.time() - self.retention_s
        with self._lock:
            for rec in [r for r in self._records.values() if r.ended is not None and r.ended <= cutoff]:
                self._drop(rec.checkpoint_id, "retention after the stream ended")
