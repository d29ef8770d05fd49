"""The worker's bookkeeping, without a model or a server (fast): stream-count admission with per-key quotas, and the
checkpoint index across a restart and at its default limits."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from server.metrics import Metrics
from server.worker.admission import Admission, CapacityError, QuotaError
from server.worker.checkpoint_index import CheckpointIndex, CheckpointRecord


def _session(owner: str, source: str = "ws") -> SimpleNamespace:
    return SimpleNamespace(owner=owner, source=source, reserved_bytes=0, method="online", preset="default")


def _refusals(metrics: Metrics, reason: str) -> float:
    return metrics.refusals.labels(reason)._value.get()


def test_a_key_at_its_stream_quota_is_refused_and_counted_while_other_keys_and_jobs_get_in() -> None:
    metrics = Metrics()
    admission = Admission(metrics, max_streams=10, max_state_memory=1 << 30, max_streams_per_owner=2)
    held = [_session("a"), _session("a"), _session("b"), _session("a", source="job")]
    admission.check_count(held, _session("b"))  # b holds one: room for another
    admission.check_count(held, _session("a", source="job"))  # jobs have their own limit
    admission.check_count(held[:2], held[1])  # a session is not counted against itself
    with pytest.raises(QuotaError, match="already has 2 live streams"):
        admission.check_count(held, _session("a"))
    assert _refusals(metrics, "key_streams") == 1
    unlimited = Admission(metrics, max_streams=10, max_state_memory=1 << 30)
    unlimited.check_count(held, _session("a"))  # no per-key limit with auth off


def test_a_full_service_refuses_and_counts_the_refusal() -> None:
    metrics = Metrics()
    admission = Admission(metrics, max_streams=2, max_state_memory=1 << 30)
    with pytest.raises(CapacityError, match="2 of 2 streams"):
        admission.check_count([_session("a"), _session("b")], _session("c"))
    assert _refusals(metrics, "streams") == 1
    admission.check_count([_session("a")], _session("c"))


def _record(path: Path, checkpoint_id: str, ended: float | None, stream: str = "s") -> CheckpointRecord:
    rec = CheckpointRecord(checkpoint_id=checkpoint_id, stream_id=stream, bytes=10, frames=1, method="online",
                           preset="default", created=time.time(), ended=ended, owner="k")
    (path / f"{checkpoint_id}.pt").write_bytes(b"x" * 10)
    (path / f"{checkpoint_id}.json").write_text(rec.model_dump_json())
    return rec


def test_a_restart_ends_open_streams_drops_records_without_blobs_and_skips_unreadable_ones(tmp_path: Path) -> None:
    _record(tmp_path, "open", ended=None)
    _record(tmp_path, "orphan", ended=None)
    (tmp_path / "orphan.pt").unlink()  # its blob is gone: the record goes too
    (tmp_path / "broken.json").write_text("{not json")
    before = time.time()
    index = CheckpointIndex(tmp_path, retention_s=60.0)
    everyone = lambda owner: True  # noqa: E731
    assert [r.checkpoint_id for r in index.visible(everyone)] == ["open"]
    assert not (tmp_path / "orphan.json").exists()
    ended = index.get("open", everyone).ended
    assert ended is not None and ended >= before  # the stream died with the previous process
    assert CheckpointRecord.model_validate_json((tmp_path / "open.json").read_text()).ended == ended  # written back


def test_the_defaults_keep_three_per_stream_a_gibibyte_per_key_for_an_hour(tmp_path: Path) -> None:
    index = CheckpointIndex(tmp_path)
    assert (index.per_stream, index.bytes_per_key, index.retention_s) == (3, 1 << 30, 3600.0)
    _record(tmp_path, "old", ended=time.time() - 3000.0)
    _record(tmp_path, "older", ended=time.time() - 4000.0)
    kept = CheckpointIndex(tmp_path)
    assert [r.checkpoint_id for r in kept.visible(lambda owner: True)] == ["old"]  # past the hour: deleted
