"""A one-connection RTSP relay on 127.0.0.1: FFmpeg talks to it, it talks to the camera's checked address.

Why: FFmpeg resolves the camera's host name itself and follows RTSP 3xx redirects on its own (no option turns
that off), both after the service checked the URL.  So each connection attempt of a camera goes through
:func:`open_relay`:

1. resolve the host with the service's :class:`~server.sources.url_policy.HostPolicy` and check every
   address (refused: the attempt fails with a clear message, nothing is connected);
2. connect to a checked address (for ``rtsps``, TLS is terminated here: SNI with the host name, no
   certificate check, like FFmpeg's default), so DNS cannot change the peer after the check;
3. listen on an ephemeral 127.0.0.1 port and hand FFmpeg ``rtsp://[user:pw@]127.0.0.1:<port>/<path>``;
   accept one connection and copy bytes both ways; the camera's bytes go through
   :class:`~server.sources.rtsp_framing.ServerStream`, so a 3xx response is never forwarded: the relay
   closes both sides and :meth:`Relay.failure` says "camera redirected to <location>: redirects are refused".

The reader runs RTSP over TCP, so media is interleaved on that one connection.  The relay is bounded: the
connect and the accept wait at most the open timeout, the parser holds at most one message, and the relay
ends when either side closes (FFmpeg closes on its own stall / I/O timeouts) or the session closes it.
:meth:`Relay.close` is safe from any thread; the relay's thread then exits.
"""

from __future__ import annotations

import logging
import select
import socket
import ssl
import threading
import time
import urllib.parse

from mask2former_ttt.live.diagnosis import DEFAULT_PORTS, LiveConnectError
from mask2former_ttt.video_io import redact_url

from .rtsp_framing import FramingError, Redirected, ServerStream
from .url_policy import AddressRefused, HostPolicy, IPAddress, is_ip_literal

__all__ = ["Relay", "open_relay"]

logger = logging.getLogger(__name__)
CHUNK = 64 * 1024


def _connect(addresses: list[IPAddress], port: int, timeout: float, host: str, shown: str) -> socket.socket:
    """A TCP connection to the first checked address that accepts; LiveConnectError says why none did."""
    deadline = time.monotonic() + timeout
    last = f"host {host}:{port} does not answer (unreachable or filtered): {shown}"
    for address in addresses:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            return socket.create_connection((str(address), port), timeout=left)
        except ConnectionRefusedError:
            last = f"connection refused by {host}:{port} (nothing is listening there): {shown}"
        except TimeoutError:
            last = f"host {host}:{port} does not answer (unreachable or filtered): {shown}"
        except OSError as exc:
            last = f"cannot connect to {host}:{port} ({exc.strerror or exc}): {shown}"
    raise LiveConnectError(last)


def _tls(sock: socket.socket, host: str, timeout: float, shown: str) -> ssl.SSLSocket:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # FFmpeg's rtsps default (tls_verify=0): cameras use self-signed certs
    try:
        sock.settimeout(timeout)
        tls = context.wrap_socket(sock, server_hostname=None if is_ip_literal(host) else host)
    except (OSError, ssl.SSLError) as exc:
        sock.close()
        raise LiveConnectError(f"TLS handshake with {host} failed ({exc}): {shown}") from exc
    tls.settimeout(None)
    return tls


def _recv(sock: socket.socket) -> bytes | None:
    """Read what is there without blocking; None if a TLS record brought no application data yet.

    (After a TLS 1.3 handshake the server's session tickets make the socket readable without data: a blocking
    read would then wait for the camera, which waits for the request we could not forward.)
    """
    sock.setblocking(False)
    try:
        return sock.recv(CHUNK)
    except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
        return None
    finally:
        sock.setblocking(True)


class Relay:
    """One relayed connection attempt: :attr:`url` is what FFmpeg opens; close it with the session."""

    def __init__(self, url: str, upstream: socket.socket, open_timeout_s: float) -> None:
        parts = urllib.parse.urlsplit(url)
        self._shown = redact_url(url)
        self._upstream = upstream
        self._lock = threading.Lock()
        self._failure: str | None = None
        self._closed = False
        self._client: socket.socket | None = None
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=1)
        self._listener.settimeout(open_timeout_s)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@" if userinfo else ""
        port = self._listener.getsockname()[1]
        self.url = urllib.parse.urlunsplit(("rtsp", f"{netloc}127.0.0.1:{port}", parts.path, parts.query, ""))
        self._thread = threading.Thread(target=self._run, name=f"rtsp-relay[{port}]", daemon=True)
        self._thread.start()

    def failure(self) -> str | None:
        """Why the relay cut the connection (a refused redirect, an oversized message), or None."""
        with self._lock:
            return self._failure

    @property
    def closed(self) -> bool:
        with self._lock:
            return self._closed

    def close(self) -> None:
        """Cut both sides now (from any thread); the relay thread exits at once."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            sockets = [s for s in (self._client, self._upstream) if s is not None]
        for sock in [*sockets, self._listener]:  # wakes the relay thread from accept / recv / sendall
            try:
                socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the plain socket's, also for TLS
            except OSError:
                pass

    def _fail(self, message: str) -> None:
        with self._lock:
            self._failure = self._failure or message
        logger.warning("rtsp relay for %s: %s", self._shown, message)

    def _run(self) -> None:
        try:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed, or FFmpeg never came (its own error says why)
            finally:
                self._listener.close()
            with self._lock:
                self._client = client
                if self._closed:
                    return
            self._pump(client)
        except Exception:  # a relay bug must not leak sockets or kill the process
            logger.exception("rtsp relay for %s crashed", self._shown)
        finally:
            self.close()
            for sock in (self._client, self._upstream):
                if sock is not None:
                    sock.close()

    def _pump(self, client: socket.socket) -> None:
        """Copy both ways until a side closes, :meth:`close`, or a refused message.

        Sockets block without a timeout on purpose: a consumer that reads slowly (policy ``block``) must
        slow the camera down, as with a direct connection; FFmpeg's own I/O timeout and :meth:`close` end it.
        """
        upstream, parser = self._upstream, ServerStream()
        client.settimeout(None)
        while not self.closed:
            ready = [upstream] if isinstance(upstream, ssl.SSLSocket) and upstream.pending() else []
            if not ready:
                ready, _, _ = select.select([client, upstream], [], [], 1.0)
            for sock in ready:
                try:
                    data = _recv(sock)
                    if data is None:
                        continue
                    if not data:
                        return  # one side closed: close the other
                    if sock is client:
                        upstream.sendall(data)
                        continue
                    forward = parser.feed(data)
                    if forward:
                        client.sendall(forward)
                except Redirected as exc:
                    self._fail(f"camera redirected to {redact_url(exc.location) or '(no location)'} "
                               f"(RTSP {exc.status}): redirects are refused")
                    return
                except FramingError as exc:
                    self._fail(f"camera sent an invalid RTSP message ({exc})")
                    return
                except OSError:
                    return  # reset, or shut down by close()


def open_relay(url: str, policy: HostPolicy, open_timeout_s: float) -> Relay:
    """Check the camera's addresses, connect to one and start a relay for FFmpeg (see the module doc).

    Raises:
        LiveConnectError: the host does not resolve, an address is refused by the policy, or no address
            accepts the connection (refused / no answer / TLS failure), with a message for the server log.
    """
    shown = redact_url(url)
    parts = urllib.parse.urlsplit(url)
    scheme, host = parts.scheme.lower(), parts.hostname or ""
    port = parts.port or DEFAULT_PORTS[scheme]
    try:
        addresses = policy.resolve(host, port)
    except AddressRefused as exc:
        raise LiveConnectError(f"{exc}: {shown}") from None
    except OSError as exc:
        raise LiveConnectError(f"cannot resolve host name {host!r} ({getattr(exc, 'strerror', None) or exc}): "
                               f"{shown}") from None
    upstream = _connect(addresses, port, open_timeout_s, host, shown)
    if scheme == "rtsps":
        upstream = _tls(upstream, host, open_timeout_s, shown)
    try:
        return Relay(url, upstream, open_timeout_s)
    except OSError:
        upstream.close()
        raise
