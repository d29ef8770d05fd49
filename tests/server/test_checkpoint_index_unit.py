"""CheckpointIndex housekeeping (fast, files in tmp): unreadable sidecars are reported, a checkpoint whose files
went missing can still be deleted, and every removal is logged with its reason; only the owner deletes."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from server.worker.checkpoint_index import CheckpointIndex, CheckpointNotFound, CheckpointRecord

EVERYONE = lambda owner: True  # noqa: E731


def admit(index: CheckpointIndex, path: Path, checkpoint_id: str, owner: str = "a") -> None:
    (path / f"{checkpoint_id}.pt").write_bytes(b"x" * 10)
    index.admit(CheckpointRecord(checkpoint_id=checkpoint_id, stream_id="s", bytes=10, frames=1, method="online",
                                 preset="default", created=time.time(), owner=owner))


def test_an_unreadable_sidecar_is_reported_and_skipped(tmp_path: Path, caplog) -> None:
    (tmp_path / "broken.json").write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="server.worker.checkpoint_index"):
        index = CheckpointIndex(tmp_path)
    assert "unreadable checkpoint record skipped" in caplog.messages
    assert index.visible(EVERYONE) == []


@pytest.mark.parametrize("missing", ["pt", "json"])
def test_a_checkpoint_whose_file_went_missing_can_still_be_deleted(tmp_path: Path, missing: str) -> None:
    index = CheckpointIndex(tmp_path)
    admit(index, tmp_path, "c")
    (tmp_path / f"c.{missing}").unlink()
    index.delete("c", EVERYONE)
    assert index.visible(EVERYONE) == []
    assert list(tmp_path.iterdir()) == []


def test_a_deletion_is_the_owners_only_and_is_logged_with_its_reason(tmp_path: Path, caplog) -> None:
    index = CheckpointIndex(tmp_path)
    admit(index, tmp_path, "c", owner="a")
    with pytest.raises(CheckpointNotFound):
        index.delete("c", lambda owner: owner == "b")
    assert [r.checkpoint_id for r in index.visible(EVERYONE)] == ["c"]
    with caplog.at_level(logging.INFO, logger="server.worker.checkpoint_index"):
        index.delete("c", lambda owner: owner == "a")
    removed = [r for r in caplog.records if r.getMessage() == "stream checkpoint removed"]
    assert len(removed) == 1 and removed[0].kv["why"] == "deleted by its owner"
