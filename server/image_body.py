"""One image in a request body: the raw bytes (`Content-Type: image/jpeg`, `image/png` or
`application/octet-stream`) or the `file` part of a multipart/form-data body, as `POST /v1/jobs` takes its video.

The body is read with a size cap (413 past it, by Content-Length or while reading); what the bytes are (JPEG or PNG,
how many pixels) is checked by the caller with the WebSocket frames' own checks.
"""

from __future__ import annotations

from fastapi import Request
from python_multipart.multipart import MultipartParser, parse_options_header

from server.jobs.upload import UploadError
from server.multipart_headers import PartHeaders

RAW_TYPES = (b"image/jpeg", b"image/png", b"application/octet-stream")
MULTIPART_SLACK = 64 * 1024  # boundaries and part headers around the image


class _Parts:
    """MultipartParser callbacks keeping the `file` part's bytes (the only part a prediction takes)."""

    def __init__(self) -> None:
        self.file: bytearray | None = None
        self.names: list[str] = []
        self.headers = PartHeaders()
        self._into: bytearray | None = None

    def on_part_begin(self) -> None:
        self.headers.reset()
        self._into = None

    def on_headers_finished(self) -> None:
        name = self.headers.disposition().name
        self.names.append(name)
        if name == "file":
            if self.file is not None:
                raise UploadError(400, "only one 'file' part per prediction")
            self.file = self._into = bytearray()

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._into is not None:
            self._into += data[start:end]

    def on_part_end(self) -> None:
        self._into = None


async def _read(request: Request, limit: int, what: str) -> bytes:
    """The whole body; UploadError 413 once it passes `limit` bytes (`what` names the limit)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise UploadError(413, f"the body is {declared} bytes; {what}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise UploadError(413, f"the body passes {limit} bytes; {what}")
    return bytes(body)


async def receive_image(request: Request, max_bytes: int) -> bytes:
    """The request's image bytes (raw body or multipart `file`), at most `max_bytes`. UploadError: 415 for another
    content type, 413 too large, 422 no image, 400 a broken multipart body or a part other than `file`."""
    ctype, options = parse_options_header(request.headers.get("content-type", ""))
    limit_text = f"the limit is {max_bytes} bytes (M2F_STREAMS_MAX_FRAME_BYTES)"
    if ctype in RAW_TYPES:
        data = await _read(request, max_bytes, limit_text)
    elif ctype == b"multipart/form-data" and options.get(b"boundary"):
        body = await _read(request, max_bytes + MULTIPART_SLACK, limit_text)
        parts = _Parts()
        callbacks = {**parts.headers.callbacks(), **{name: getattr(parts, name) for name in (
            "on_part_begin", "on_headers_finished", "on_part_data", "on_part_end",
        )}}
        try:
            parser = MultipartParser(options[b"boundary"], callbacks)
            parser.write(body)
            parser.finalize()
        except UploadError:
            raise
        except Exception as exc:  # noqa: BLE001 - python-multipart raises its own errors for broken bodies
            raise UploadError(400, f"malformed multipart body: {exc}") from None
        others = sorted(set(parts.names) - {"file"})
        if others:
            raise UploadError(400, f"unexpected form fields {others}: send the image as 'file' and the options in "
                              "the query string")
        data = bytes(parts.file or b"")
        if len(data) > max_bytes:
            raise UploadError(413, f"the image is {len(data)} bytes; {limit_text}")
    else:
        raise UploadError(415, "send one JPEG or PNG image as the body (Content-Type image/jpeg or image/png) or as "
                          "the 'file' field of multipart/form-data")
    if not data:
        raise UploadError(422, "no image in the request: the body (or its 'file' field) is empty")
    return data
