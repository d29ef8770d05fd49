"""Tiny socket peers on loopback for the camera URL tests: a scripted RTSP "camera" and a connection recorder.

:class:`FakeCamera` accepts connections, reads RTSP requests (headers + ``Content-Length`` body) and answers
each with ``respond(method, uri, cseq)`` (bytes, or None to stay silent; bytes ending in :data:`CLOSE` hang up
after sending the rest).  It records
every request, so a test can wait until the camera really sent its answer.  :class:`Recorder` only records
whether anyone connected (``connected`` event) and hangs up at once.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

CLOSE = b"<close>"
Responder = Callable[[str, str, str], bytes | None]


def _listen(host: str) -> socket.socket:
    sock = socket.create_server((host, 0), backlog=16)
    sock.settimeout(0.2)
    return sock


@dataclass
class _Peer:
    host: str = "127.0.0.1"
    sock: socket.socket = field(init=False)
    port: int = field(init=False)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = _listen(self.host)
        self.port = self.sock.getsockname()[1]
        self._spawn(self._accept_loop)

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self.threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._spawn(self.serve, conn)

    def serve(self, conn: socket.socket) -> None:
        conn.close()

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(5)
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class Recorder(_Peer):
    """Accepts and drops connections; ``connected`` is set by the first one."""

    connected: threading.Event = field(default_factory=threading.Event)

    def serve(self, conn: socket.socket) -> None:
        self.connected.set()
        conn.close()


@dataclass
class FakeCamera(_Peer):
    """Answers RTSP requests with ``respond``; ``requests`` lists ``(method, uri)`` in arrival order."""

    respond: Responder = lambda method, uri, cseq: None
    tls: ssl.SSLContext | None = None  # serve rtsps with this context
    requests: list[tuple[str, str]] = field(default_factory=list)
    answered: threading.Event = field(default_factory=threading.Event)

    def serve(self, conn: socket.socket) -> None:
        if self.tls is not None:
            conn.settimeout(5.0)
            try:
                conn = self.tls.wrap_socket(conn, server_side=True)
            except OSError:
                conn.close()
                return
        conn.settimeout(0.2)
        buf = b""
        with conn:
            while not self.stop.is_set():
                head, sep, rest = buf.partition(b"\r\n\r\n")
                if not sep:
                    try:
                        data = conn.recv(4096)
                    except TimeoutError:
                        continue
                    except OSError:
                        return
                    if not data:
                        return
                    buf += data
                    continue
                lines = head.decode("latin-1").split("\r\n")
                headers = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
                headers = {k.strip().lower(): v.strip() for k, v in headers.items()}
                body_len = int(headers.get("content-length", "0"))
                if len(rest) < body_len:
                    buf = head + sep + rest + conn.recv(4096)
                    continue
                buf = rest[body_len:]
                method, uri = (lines[0].split(" ") + ["", ""])[:2]
                self.requests.append((method, uri))
                answer = self.respond(method, uri, headers.get("cseq", "0"))
                if answer is None:
                    continue
                conn.sendall(answer.removesuffix(CLOSE))
                self.answered.set()
                if answer.endswith(CLOSE):
                    return


def redirecting(location: str) -> Responder:
    """OPTIONS -> 200; DESCRIBE (and anything else) -> 302 to ``location``."""

    def respond(method: str, uri: str, cseq: str) -> bytes:
        if method == "OPTIONS":
            return f"RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nPublic: OPTIONS, DESCRIBE, SETUP, PLAY\r\n\r\n".encode()
        return f"RTSP/1.0 302 Moved Temporarily\r\nCSeq: {cseq}\r\nLocation: {location}\r\n\r\n".encode()

    return respond


def not_rtsp(method: str, uri: str, cseq: str) -> bytes:
    """A web server's answer: reachable, but not RTSP."""
    return b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n" + CLOSE
