"""Why a live input did not open: FFmpeg's error plus a TCP probe, turned into one clear sentence.

``av.open`` reports most network problems as generic FFmpeg errors ("Invalid data", EIO, an interrupt
when PyAV's open timeout fires).  :func:`describe_open_error` recognises the specific ones (RTSP/HTTP
404, 401, 403, connection refused), recognises a timeout by how long the attempt took, and otherwise asks
the network directly (:func:`probe_tcp`: cannot resolve, refused, unreachable, no answer).  Passwords in
URLs are always redacted.
"""

from __future__ import annotations

import errno
import socket
import urllib.parse

import av
import av.error

from mask2former_ttt.video_io import redact_url

__all__ = ["DEFAULT_PORTS", "LiveConnectError", "describe_open_error", "endpoint", "probe_tcp"]

#: Default ports of the URL schemes that run over TCP (the ones :func:`probe_tcp` can check).
DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "rtmp": 1935, "http": 80, "https": 443}

#: How long the post-failure TCP probe used to explain an error may take.
PROBE_TIMEOUT_S = 1.0


class LiveConnectError(RuntimeError):
    """A connection attempt failed; the message is meant for humans (and ``stats.last_error``).

    ``kind`` follows :class:`mask2former_ttt.video_io.VideoError`: ``unavailable`` (cannot connect / open)
    or ``no_video_stream`` (it opened, but carries no video).
    """

    def __init__(self, message: str, kind: str = "unavailable") -> None:
        super().__init__(message)
        self.kind = kind


def endpoint(url: str) -> tuple[str, int] | None:
    """``(host, port)`` of a URL whose scheme runs over TCP (``rtsp``, ``http``, ``tcp``, ...), else None."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if not parts.hostname or (scheme not in DEFAULT_PORTS and scheme != "tcp"):
        return None
    port = port or DEFAULT_PORTS.get(scheme)
    return (parts.hostname, port) if port else None


def probe_tcp(host: str, port: int, timeout: float) -> str | None:
    """Try a plain TCP connect to explain a failure; None if the port answers."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return f"cannot resolve host name {host!r} ({exc.strerror})"
    last: str | None = None
    for family, socktype, proto, _name, addr in infos[:2]:
        try:
            with socket.socket(family, socktype, proto) as sock:
                sock.settimeout(timeout)
                sock.connect(addr)
            return None
        except ConnectionRefusedError:
            return f"connection refused by {host}:{port} (nothing is listening there)"
        except TimeoutError:
            last = f"host {host}:{port} does not answer (unreachable or filtered)"
        except OSError as exc:
            if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EHOSTDOWN, errno.EADDRNOTAVAIL):
                last = f"host {host}:{port} is unreachable ({exc.strerror})"
            else:
                last = f"cannot connect to {host}:{port} ({exc.strerror or exc})"
    return last


def describe_open_error(
    exc: BaseException,
    url: str,
    open_timeout_s: float,
    elapsed_s: float,
    input_format: str | None = None,
    probe: bool = True,
) -> str:
    """Turn an exception from ``av.open`` into a clear, URL-specific message.

    ``elapsed_s`` is how long the attempt took: PyAV's open timeout surfaces as a
    generic FFmpeg error (often "Invalid data"), so a timeout is recognised by time.
    Inputs that are not TCP URLs (camera devices, ``lavfi``, ...) get FFmpeg's reason.
    ``probe=False`` skips the TCP probe: the caller reached the host already (a relay connected to it), and a
    second connection would go wherever DNS points now.
    """
    shown = redact_url(url)
    detail = getattr(exc, "strerror", None) or str(exc)
    where = endpoint(url)
    if where is None:
        what = "camera device" if url.startswith("/dev/") else "input"
        fmt = f" (format {input_format})" if input_format else ""
        return f"cannot open {what} {shown}{fmt}: {detail}"
    host, port = where
    scheme = urllib.parse.urlsplit(url).scheme.upper()
    if isinstance(exc, av.error.HTTPNotFoundError):
        path = urllib.parse.urlsplit(url).path or "/"
        return f"stream not found ({scheme} 404 Not Found): the server has no stream at path {path!r}: {shown}"
    if isinstance(exc, av.error.HTTPUnauthorizedError):
        return f"authentication failed ({scheme} 401 Unauthorized) for {shown}"
    if isinstance(exc, av.error.HTTPForbiddenError):
        return f"access denied ({scheme} 403 Forbidden) for {shown}"
    if isinstance(exc, av.error.HTTPError | av.error.HTTPClientError | av.error.HTTPServerError):
        return f"{scheme} server error for {shown}: {detail}"
    if isinstance(exc, av.error.ConnectionRefusedError | ConnectionRefusedError):
        return f"connection refused by {host}:{port} (nothing is listening there): {shown}"
    timed_out = isinstance(exc, av.error.ExitError | TimeoutError | av.error.TimeoutError) or (
        elapsed_s >= 0.95 * open_timeout_s
    )
    # Generic errors (EIO, "invalid data", interrupts): ask the network what is wrong.
    found = probe_tcp(host, port, min(PROBE_TIMEOUT_S, max(0.1, open_timeout_s))) if probe else None
    if found is not None:
        return f"{found}: {shown}"
    if timed_out:
        return (
            f"timed out after {open_timeout_s:g} s opening {shown}: the port accepts TCP "
            f"connections but no {scheme} answer came back"
        )
    return f"cannot open {shown} (host reachable, but not a working {scheme} stream): {detail}"
