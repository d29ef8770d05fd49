"""Streaming multipart upload: the file part goes to disk chunk by chunk and stops at a size cap."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import Request
from python_multipart.multipart import MultipartParser, parse_options_header

from server.multipart_headers import PartHeaders

MAX_FIELD_BYTES = 4096
SAFE_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,8}$")


class UploadError(Exception):
    """`status` is the HTTP status to answer with (400, 413, 415, 422)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Collector:
    """MultipartParser callbacks: small text fields in memory, the `file` part streamed to `dest`."""

    def __init__(self, dest_dir: Path, max_bytes: int) -> None:
        self.dest_dir = dest_dir
        self.max_bytes = max_bytes
        self.fields: dict[str, str] = {}
        self.file_path: Path | None = None
        self.filename: str | None = None
        self.size = 0
        self.headers = PartHeaders()
        self._name: str | None = None
        self._buf: bytearray | None = None
        self._fh = None

    def on_part_begin(self) -> None:
        self.headers.reset()
        self._name, self._buf = None, None

    def on_headers_finished(self) -> None:
        disposition = self.headers.disposition()
        self._name = disposition.name
        if disposition.filename is not None:
            if self._name != "file":
                raise UploadError(400, f"unexpected file field {self._name!r}; send the video as 'file'")
            if self.file_path is not None:
                raise UploadError(400, "only one file per job")
            self.filename = Path(disposition.filename).name or "upload"
            suffix = Path(self.filename).suffix
            self.file_path = self.dest_dir / f"input{suffix if SAFE_SUFFIX.match(suffix) else ''}"
            self._fh = self.file_path.open("wb")
        else:
            self._buf = bytearray()

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._fh is not None:
            self.size += len(chunk)
            if self.size > self.max_bytes:
                raise UploadError(413, f"upload exceeds the limit of {self.max_bytes} bytes")
            self._fh.write(chunk)
        elif self._buf is not None:
            self._buf += chunk
            if len(self._buf) > MAX_FIELD_BYTES:
                raise UploadError(400, f"form field {self._name!r} is longer than {MAX_FIELD_BYTES} bytes")

    def on_part_end(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        elif self._buf is not None and self._name:
            self.fields[self._name] = self._buf.decode("utf-8", "replace")
        self._buf = None

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


async def receive_upload(request: Request, dest_dir: Path, max_bytes: int) -> tuple[Path, str, int, dict[str, str]]:
    """Parse a multipart/form-data body: returns (file path, original file name, size, text fields).

    Raises UploadError: 415 not multipart, 413 too large (by Content-Length or while streaming), 422 no file.
    """
    ctype, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise UploadError(415, "send the video as multipart/form-data with a 'file' field")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes + 64 * 1024:
        raise UploadError(413, f"upload of {declared} bytes exceeds the limit of {max_bytes} bytes")
    collector = _Collector(dest_dir, max_bytes)
    callbacks = {
        **collector.headers.callbacks(),
        **{
            name: getattr(collector, name)
            for name in ("on_part_begin", "on_headers_finished", "on_part_data", "on_part_end")
        },
    }
    parser = MultipartParser(boundary, callbacks)
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except UploadError:
        raise
    except Exception as exc:  # noqa: BLE001 - python-multipart raises its own errors for broken bodies
        raise UploadError(400, f"malformed multipart body: {exc}") from None
    finally:
        collector.close()
    if collector.file_path is None or collector.size == 0:
        raise UploadError(422, "no video in the upload: send a non-empty 'file' field")
    return collector.file_path, collector.filename or "upload", collector.size, collector.fields
