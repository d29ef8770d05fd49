"""One multipart part's headers, gathered from python-multipart's streaming parser callbacks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from python_multipart.multipart import parse_options_header


@dataclass(frozen=True)
class Disposition:
    """A part's Content-Disposition: its form field `name` ("" when absent) and `filename` (None when absent)."""

    name: str
    filename: str | None


class PartHeaders:
    """Accumulates the headers of the part being parsed; `reset` at each part's start."""

    def __init__(self) -> None:
        self._headers: dict[bytes, bytes] = {}
        self._field = b""
        self._value = b""

    def callbacks(self) -> dict[str, Callable[..., None]]:
        """The MultipartParser header callbacks this object serves."""
        return {
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
        }

    def reset(self) -> None:
        """Forget the previous part's headers."""
        self._headers = {}

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field, self._value = b"", b""

    def disposition(self) -> Disposition:
        """The part's name and file name from its Content-Disposition header (undecodable bytes replaced)."""
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        filename = options.get(b"filename")
        return Disposition(
            name=options.get(b"name", b"").decode("utf-8", "replace"),
            filename=None if filename is None else filename.decode("utf-8", "replace"),
        )
