"""The worker's bookkeeping, without a model or a server (fast): stream-count admission with per-key quotas, the
checkpoint index across a restart and at its default limits, and the decode-ahead pool's size."""

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
    everyone = lambda owner: True
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


def _admit(index: CheckpointIndex, path: Path, checkpoint_id: str, owner: str, stream: str, size: int,
           ended: float | None = None) -> None:
    (path / f"{checkpoint_id}.pt").write_bytes(b"x" * size)
    index.admit(CheckpointRecord(checkpoint_id=checkpoint_id, stream_id=stream, bytes=size, frames=1,
                                 method="online", preset="default", created=time.time(), ended=ended, owner=owner))


def test_the_byte_quota_evicts_only_the_owners_ended_checkpoints_and_refuses_past_them(tmp_path: Path) -> None:
    from server.worker.checkpoint_index import CheckpointQuotaError

    index = CheckpointIndex(tmp_path, per_stream=10, bytes_per_key=100)
    everyone = lambda owner: True
    _admit(index, tmp_path, "a-ended", "a", "s1", 40, ended=time.time())
    _admit(index, tmp_path, "a-live", "a", "s2", 40)
    _admit(index, tmp_path, "b-ended", "b", "s3", 90, ended=time.time())
    _admit(index, tmp_path, "a-new", "a", "s2", 50)  # 130 > 100: a's ended checkpoint goes, b's stays
    assert {r.checkpoint_id for r in index.visible(everyone)} == {"a-live", "b-ended", "a-new"}
    assert not (tmp_path / "a-ended.pt").exists() and (tmp_path / "a-new.json").exists()
    with pytest.raises(CheckpointQuotaError, match="quota exceeded"):
        _admit(index, tmp_path, "a-too-big", "a", "s2", 20)  # nothing of a's has ended: refused
    assert not (tmp_path / "a-too-big.pt").exists()
    assert "a-too-big" not in {r.checkpoint_id for r in index.visible(everyone)}


def test_a_stream_keeps_its_newest_checkpoints_and_its_end_starts_their_retention(tmp_path: Path) -> None:
    index = CheckpointIndex(tmp_path, per_stream=2, retention_s=0.0)
    everyone = lambda owner: True
    for i in range(3):
        _admit(index, tmp_path, f"s-{i}", "a", "s", 1)
    _admit(index, tmp_path, "t-0", "a", "t", 1)
    assert [r.checkpoint_id for r in index.visible(everyone)] == ["s-1", "s-2", "t-0"]  # s-0 evicted
    assert not (tmp_path / "s-0.pt").exists()
    index.stream_ended("s")  # retention 0: s's checkpoints go at once, t's stay
    assert [r.checkpoint_id for r in index.visible(everyone)] == ["t-0"]
    assert not (tmp_path / "s-1.json").exists()
    kept = CheckpointIndex(tmp_path, per_stream=2, retention_s=60.0)
    kept.stream_ended("t")  # within retention: kept, its end written to the sidecar for the next start
    assert CheckpointRecord.model_validate_json((tmp_path / "t-0.json").read_text()).ended is not None


def test_decoding_ahead_takes_zero_threads_as_decode_on_the_lane_and_refuses_negative_counts() -> None:
    from server.worker.decode_ahead import DecodeAhead

    inline = DecodeAhead(0, 1 << 20)  # no pool: frames are decoded by the lane that runs them
    assert inline._pool is None
    with pytest.raises(ValueError, match="decode threads must be >= 0"):
        DecodeAhead(-1, 1 << 20)
