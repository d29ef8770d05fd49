"""Failover checkpoints outside the front-end's memory: a local directory (atomic replace) or an fsspec URL."""

from __future__ import annotations

from pathlib import Path

import fsspec

from server.ray_backend.checkpoint_storage import write_checkpoint


def test_a_directory_gets_the_latest_checkpoint_of_each_stream(tmp_path: Path) -> None:
    where = write_checkpoint(tmp_path / "failover", "ws-1", b"first")
    write_checkpoint(tmp_path / "failover", "ws-1", b"second")
    write_checkpoint(tmp_path / "failover", "ws-2", b"other")
    assert Path(where) == tmp_path / "failover" / "ws-1.pt"
    assert (tmp_path / "failover" / "ws-1.pt").read_bytes() == b"second"
    assert sorted(p.name for p in (tmp_path / "failover").iterdir()) == ["ws-1.pt", "ws-2.pt"]  # no temp files left


def test_an_fsspec_url_is_written_through_fsspec() -> None:
    where = write_checkpoint("memory://m2f-failover/", "ws-7", b"state")
    assert where == "memory://m2f-failover/ws-7.pt"
    with fsspec.open(where, "rb") as f:
        assert f.read() == b"state"
