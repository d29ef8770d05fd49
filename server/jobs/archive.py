"""A job's result files as one ZIP, streamed while it is written (no temporary file, constant memory).

Entries are `<job id>/<result path>` (e.g. `3f2a.../panoptic/000000.png`); JSON / JSONL files are deflated, media
(PNG, MP4: already compressed) stored. ZIP64 is used when a file is large, so any result size works.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

CHUNK = 1 << 20
DEFLATED_SUFFIXES = (".json", ".jsonl")


class _Sink(io.RawIOBase):
    """Unseekable write target that hands out what was written since the last `drain()`."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self._parts.append(bytes(data))
        return len(data)

    def drain(self) -> bytes:
        out, self._parts = b"".join(self._parts), []
        return out


def result_files(root: Path, under: str = "") -> list[str]:
    """Result files below `root / under` as sorted `/`-separated paths relative to `root` (hidden files skipped)."""
    base = root / under if under else root
    names = (p.relative_to(root).as_posix() for p in base.rglob("*") if p.is_file())
    return sorted(n for n in names if not any(part.startswith(".") for part in n.split("/")))


def iter_zip(root: Path, prefix: str) -> Iterator[bytes]:
    """The ZIP of every result file under `root`, entries named `<prefix>/<path>`, as chunks of bytes."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w") as archive:
        for name in result_files(root):
            path = root / name
            method = zipfile.ZIP_DEFLATED if path.suffix in DEFLATED_SUFFIXES else zipfile.ZIP_STORED
            info = zipfile.ZipInfo.from_file(path, f"{prefix}/{name}")
            info.compress_type = method
            with path.open("rb") as src, archive.open(info, "w", force_zip64=path.stat().st_size > 1 << 30) as dst:
                while chunk := src.read(CHUNK):
                    dst.write(chunk)
                    if data := sink.drain():
                        yield data
            if data := sink.drain():
                yield data
    yield sink.drain()
