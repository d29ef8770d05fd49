"""Browser Origin check for WebSockets and state-changing HTTP requests (cross-site request forgery guard).

A browser sends `Origin` on every WebSocket handshake and on cross-site POST / PUT / PATCH / DELETE requests; a
page on another site can otherwise drive the service from a visitor's browser (auth off, or keys the browser
holds). A request is refused when its `Origin` names another host:port than its `Host` header and is not listed
in `M2F_API_ALLOWED_ORIGINS` (`*`: any). Requests without `Origin` (curl, scripts, server-side clients) pass.

When `Host` has no port (the service behind a proxy that terminates TLS on 443 and talks plain HTTP to it), only
the host names are compared. Refusals: HTTP 403 with a `detail` message; WebSocket: an `error` message
(`code: "origin_not_allowed"`) then close 1008.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, WebSocket, WebSocketException, status
from starlette.requests import HTTPConnection

from server.settings import Settings
from server.wire.inbound import CLOSE_POLICY, close_reason
from server.wire.outbound import error_message

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}


def _origin_host_port(origin: str) -> tuple[str, int] | None:
    """(host, port) of an `Origin` value such as `https://example.com:8443`; None if it is not http(s)."""
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return parts.hostname, port or DEFAULT_PORTS[parts.scheme]


def _host_header(host: str) -> tuple[str, int | None] | None:
    """(host, port or None) of a `Host` header value; None if it does not parse."""
    try:
        parts = urlsplit(f"//{host}")
        return (parts.hostname, parts.port) if parts.hostname else None
    except ValueError:
        return None


def origin_refusal(settings: Settings, origin: str | None, host: str | None) -> str | None:
    """Why a request with these `Origin` / `Host` headers is refused, or None when it is allowed."""
    if origin is None:
        return None
    allowed = {o.strip().rstrip("/").lower() for o in settings.api.allowed_origins}
    if "*" in allowed or origin.strip().rstrip("/").lower() in allowed:
        return None
    source = _origin_host_port(origin.strip().lower())
    target = _host_header(host.strip().lower()) if host else None
    if source is not None and target is not None:
        if source[0] == target[0] and (target[1] is None or source[1] == target[1]):
            return None
    return (
        f"cross-origin request refused: Origin {origin[:200]!r} is not this service (Host {str(host)[:200]!r}) "
        "and not in M2F_API_ALLOWED_ORIGINS"
    )


async def require_allowed_origin(conn: HTTPConnection) -> None:
    """FastAPI dependency (HTTP and WebSocket routes): refuse a browser request from another origin.

    HTTP: only state-changing methods are checked (403). WebSocket: the socket is accepted, gets an `error`
    message and is closed with 1008, before the route runs."""
    settings: Settings = conn.app.state.settings
    if isinstance(conn, WebSocket):
        reason = origin_refusal(settings, conn.headers.get("origin"), conn.headers.get("host"))
        if reason is not None:
            await conn.accept()
            await conn.send_text(json.dumps(error_message("origin_not_allowed", reason)))
            raise WebSocketException(CLOSE_POLICY, reason=close_reason(reason))
        return
    if conn.scope.get("method") in UNSAFE_METHODS:
        reason = origin_refusal(settings, conn.headers.get("origin"), conn.headers.get("host"))
        if reason is not None:
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail=reason)


SameOrigin = Depends(require_allowed_origin)
