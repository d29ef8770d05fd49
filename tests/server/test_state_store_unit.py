"""StreamStateStore on its own (fake adapters): what a state file holds with and without the tracker, whose
checkpoints a stream may load, ids that are refused before they become paths, and the index's default limits."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from server.worker.checkpoint_index import CheckpointNotFound
from server.worker.state_store import STATE_FORMAT, StreamStateStore, load_tracker, state_blob
from server.worker.stream_session import StreamSession
from tests.server.svc_helpers import FakeAdapter


def stream(owner: str = "key-a", method: str = "online", preset: str = "default", total: float = 0.0) -> StreamSession:
    s = StreamSession("ws", "semantic", method, preset, "block", 2, lambda obj: None, owner=owner)
    s.adapter = FakeAdapter(total=total, seen=[total])
    s.processed = 7
    return s


def test_a_state_file_holds_the_tracker_only_when_asked() -> None:
    s = stream(total=2.5)
    plain = state_blob(s)
    assert set(plain) == {"format", "method", "preset", "frames", "state"}
    assert plain["format"] == STATE_FORMAT and plain["frames"] == 7 and float(plain["state"]["total"]) == 2.5
    assert "tracker" in state_blob(s, tracker=True)


def test_loading_a_blob_continues_its_tracker_and_a_blob_without_one_leaves_it() -> None:
    source, target = stream(), stream()
    source.tracker.load_state_dict({**source.tracker.state_dict(), "next_id": 42, "frame": 9})
    saved = state_blob(source, tracker=True)
    untouched = target.tracker.state_dict()
    load_tracker(target, {"state": {}})
    assert target.tracker.state_dict() == untouched != saved["tracker"]
    load_tracker(target, saved)
    assert target.tracker.state_dict() == saved["tracker"]


def test_a_checkpoint_restores_into_a_stream_of_the_same_key_method_and_preset(tmp_path: Path, caplog) -> None:
    store = StreamStateStore(tmp_path / "new" / "states")  # created with its parents on the first save
    with caplog.at_level(logging.INFO, logger="server.worker.state_store"):
        saved = store.save(stream(total=3.0))
    assert "stream checkpoint" in caplog.messages
    again = store.save(stream(total=4.0))  # a second save into the existing folder
    fresh = stream()
    assert store.restore(fresh, saved["checkpoint_id"]) == {"checkpoint_id": saved["checkpoint_id"], "frames": 7}
    assert fresh.adapter.total == 3.0
    assert store.restore(fresh, again["checkpoint_id"])["frames"] == 7 and fresh.adapter.total == 4.0
    with pytest.raises(CheckpointNotFound):
        store.restore(stream(owner="key-b"), saved["checkpoint_id"])  # another key's checkpoint does not exist
    with pytest.raises(ValueError, match="preset"):
        store.restore(stream(preset="fast"), saved["checkpoint_id"])
    with pytest.raises(ValueError, match="method"):
        store.restore(stream(method="no_memory"), saved["checkpoint_id"])


def test_a_blob_taken_elsewhere_is_saved_as_given(tmp_path: Path) -> None:
    store = StreamStateStore(tmp_path)
    s = stream(total=1.0)
    taken = state_blob(stream(total=9.0))  # e.g. by a Ray actor
    saved = store.save(s, taken)
    assert float(store.load(s, saved["checkpoint_id"])["state"]["total"]) == 9.0


@pytest.mark.parametrize("bad", [None, "", "../etc/passwd", "a" * 65, "a.pt"])
def test_ids_that_are_not_checkpoint_ids_are_refused_before_any_lookup(tmp_path: Path, bad) -> None:
    with pytest.raises(ValueError, match="checkpoint_id must be"):
        StreamStateStore(tmp_path).path(bad, lambda owner: True)


def test_a_checkpoint_whose_file_is_gone_is_not_found(tmp_path: Path) -> None:
    store = StreamStateStore(tmp_path)
    saved = store.save(stream())
    (tmp_path / f"{saved['checkpoint_id']}.pt").unlink()
    with pytest.raises(CheckpointNotFound):
        store.path(saved["checkpoint_id"], lambda owner: True)


def test_the_store_keeps_three_per_stream_a_gibibyte_per_key_for_an_hour_by_default(tmp_path: Path) -> None:
    index = StreamStateStore(tmp_path).index
    assert (index.per_stream, index.bytes_per_key, index.retention_s) == (3, 1024**3, 3600.0)
