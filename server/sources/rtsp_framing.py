"""Split a camera's RTSP-over-TCP byte stream into units the way FFmpeg reads it, to stop redirects.

FFmpeg's RTSP client (libavformat ``ff_rtsp_read_reply``) reads the server's bytes line by line (``\\n`` ends a
line, ``\\r`` is dropped); a ``$`` at the start of a line begins an interleaved media packet (``$``, channel,
16-bit length, payload) that is skipped whole, even between header lines; the first line is
``RTSP/x.y <code> <reason>`` for a response (anything else is a server request, never followed); an empty line
ends the headers, then ``Content-Length`` bytes of body follow.  A 3xx response during set-up makes FFmpeg
reconnect to its ``Location`` on its own, which no option turns off.

:class:`ServerStream` parses with the same rules and releases whole units only: an interleaved packet, or a
message (with its body) whose status line was checked.  A 3xx response raises :class:`Redirected` instead;
oversized or ambiguous messages raise :class:`FramingError`.  Either way the relay drops the connection, so
FFmpeg never sees the response.
"""

from __future__ import annotations

__all__ = ["FramingError", "MAX_BODY", "MAX_HEADER", "Redirected", "ServerStream"]

MAX_HEADER = 256 * 1024  # bytes of one message before its body (start line, headers, stray packets)
MAX_BODY = 1024 * 1024  # bytes of one message body (an SDP is a few KiB)


class FramingError(ValueError):
    """The camera sent something the relay will not pass on (too large, conflicting lengths)."""


class Redirected(Exception):
    """The camera answered with a 3xx status; ``location`` is its ``Location`` header ('' if none)."""

    def __init__(self, status: int, location: str) -> None:
        super().__init__(f"status {status}")
        self.status, self.location = status, location


def _atoi(word: bytes) -> int:
    """C ``atoi``: leading blanks, an optional sign and the leading digits; 0 when there are none."""
    text = word.decode("latin-1").lstrip(" \t\n\v\f\r")
    sign = -1 if text[:1] == "-" else 1
    text = text[1:] if text[:1] in ("+", "-") else text
    digits = len(text) - len(text.lstrip("0123456789"))
    return sign * int(text[:digits]) if digits else 0


def _status(line: bytes) -> int | None:
    """The status code FFmpeg reads from a start line (None for a server request).

    FFmpeg splits words on blanks and tabs and wants a first word starting with ``RTSP/``; to be safe this
    also accepts any letter case and splitting on any ASCII white space, and returns a 3xx code if either
    reading gives one.
    """
    codes = []
    for words in (line.replace(b"\t", b" ").split(b" "), line.split()):
        words = [w for w in words if w]
        if len(words) >= 2 and words[0][:5].upper() == b"RTSP/":
            codes.append(_atoi(words[1]))
    return next((c for c in codes if 300 <= c < 400), codes[0] if codes else None)


def _header(lines: list[bytes], name: bytes) -> list[bytes]:
    """Values of header ``name`` (case-insensitive; FFmpeg matches a line prefix ``Name:``)."""
    prefix = name.lower() + b":"
    return [line[len(prefix):].strip() for line in lines[1:] if line[: len(prefix)].lower() == prefix]


class ServerStream:
    """Incremental parser of server-to-client bytes: :meth:`feed` returns the bytes that may be forwarded."""

    def __init__(self) -> None:
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        """Bytes received but not released yet (an incomplete unit)."""
        return len(self._buf)

    def feed(self, data: bytes) -> bytes:
        """Add received bytes; return the complete units among them. Raises Redirected / FramingError."""
        self._buf += data
        out = bytearray()
        while self._buf:
            size = self._unit_size()
            if size is None:
                break
            out += self._buf[:size]
            del self._buf[:size]
        return bytes(out)

    def _packet_end(self, pos: int) -> int | None:
        """End of the interleaved packet starting at ``pos`` (a ``$``), or None if incomplete."""
        if len(self._buf) < pos + 4:
            return None
        end = pos + 4 + int.from_bytes(self._buf[pos + 2 : pos + 4], "big")
        return end if len(self._buf) >= end else None

    def _unit_size(self) -> int | None:
        """Size of the complete unit at the start of the buffer, None if more bytes are needed."""
        pos, lines = 0, []
        while True:
            if pos > MAX_HEADER:
                raise FramingError(f"RTSP message headers longer than {MAX_HEADER} bytes")
            start = pos  # FFmpeg drops '\r' before looking for a '$' at a line start
            while self._buf[start : start + 1] == b"\r":
                start += 1
            if start == len(self._buf):
                return None
            if self._buf[start : start + 1] == b"$":
                end = self._packet_end(start)
                if end is None:
                    return None
                if not lines and pos == 0:
                    return end  # a packet between messages
                pos = end
                continue
            newline = self._buf.find(b"\n", pos)
            if newline < 0:
                if len(self._buf) - pos > MAX_HEADER:
                    raise FramingError(f"RTSP header line longer than {MAX_HEADER} bytes")
                return None
            line = bytes(self._buf[pos:newline]).replace(b"\r", b"")
            pos = newline + 1
            if line:
                lines.append(line)
                continue
            return self._message_size(lines, pos)

    def _message_size(self, lines: list[bytes], body_start: int) -> int | None:
        lengths = _header(lines, b"content-length")
        if len(lengths) > 1:
            raise FramingError("RTSP message with more than one Content-Length header")
        length = max(0, _atoi(lengths[0])) if lengths else 0
        if length > MAX_BODY:
            raise FramingError(f"RTSP message body of {length} bytes (limit {MAX_BODY})")
        status = _status(lines[0]) if lines else None
        if status is not None and 300 <= status < 400:
            location = (_header(lines, b"location") or [b""])[-1]
            raise Redirected(status, location.decode("latin-1", "replace"))
        end = body_start + length
        return end if len(self._buf) >= end else None
