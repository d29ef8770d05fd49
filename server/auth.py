"""API-key auth and tenancy for HTTP and WebSocket routes.

When `M2F_API_KEYS` (or `M2F_API_ADMIN_KEYS`) is set, a request must carry one of the keys as `X-API-Key: <key>` or
`Authorization: Bearer <key>`. WebSocket clients that cannot set headers (browsers) send the key in their first
message (`{"type": "start", "api_key": ...}` on `/v1/streams/ws`, `{"type": "auth", "api_key": ...}` on a camera's
results socket); `?api_key=` in the URL still works for old clients but is redacted from the logs.

A valid key becomes a :class:`Principal`: the key's id (a hash, never the key) owns every stream, job and
checkpoint made with it; other keys get 404 for them; admin keys see everything. With no keys configured, auth is
off and every caller is the same anonymous admin.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, WebSocket, status

from server.settings import Settings

UNAUTHORIZED = "missing or invalid API key: send X-API-Key or Authorization: Bearer"


@dataclass(frozen=True)
class Principal:
    """Who is calling: `key_id` (`""` when auth is off) owns what it creates; `admin` may act on anything."""

    key_id: str
    admin: bool = False

    def owns(self, owner: str) -> bool:
        """True if this caller may see and act on a resource recorded with `owner`."""
        return self.admin or hmac.compare_digest(owner.encode(), self.key_id.encode())


ANONYMOUS = Principal(key_id="", admin=True)


def key_id(key: str) -> str:
    """Stable, non-reversible id of an API key (what logs and owner fields record): `k-` + 12 hex digits."""
    return "k-" + hashlib.sha256(key.encode()).hexdigest()[:12]


def _matches(key: str, keys: list[str]) -> bool:
    ok = False
    for valid in keys:  # constant time over every configured key
        ok |= hmac.compare_digest(key.encode(), valid.encode())
    return ok


def authenticate(settings: Settings, key: str | None) -> Principal | None:
    """The principal for a presented key; None if auth is on and the key is missing or unknown."""
    if not settings.auth_enabled:
        return ANONYMOUS
    if not key:
        return None
    admin = _matches(key, settings.api.admin_keys)
    if admin or _matches(key, settings.api.keys):
        return Principal(key_id(key), admin=admin)
    return None


def presented_key(headers: object, query: object | None = None) -> str | None:
    """The key of `X-API-Key`, `Authorization: Bearer`, or (WebSocket only: pass `query`) `?api_key=`."""
    key = headers.get("x-api-key")  # type: ignore[attr-defined]
    if key:
        return key
    auth = headers.get("authorization") or ""  # type: ignore[attr-defined]
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    if query is not None:
        return query.get("api_key")  # type: ignore[attr-defined]
    return None


def require_principal(request: Request) -> Principal:
    """FastAPI dependency for HTTP routes: the caller, or 401 without a valid key (when auth is on)."""
    principal = authenticate(request.app.state.settings, presented_key(request.headers))
    if principal is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail=UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})
    return principal


def require_api_key(request: Request) -> None:
    """FastAPI dependency for routes that need a valid key but no owner (ops)."""
    require_principal(request)


def websocket_principal(websocket: WebSocket, first_message_key: str | None = None) -> Principal | None:
    """The WebSocket caller from its handshake headers, `?api_key=`, or the key of its first message."""
    settings: Settings = websocket.app.state.settings
    return authenticate(settings, presented_key(websocket.headers, websocket.query_params) or first_message_key)


PrincipalDep = Annotated[Principal, Depends(require_principal)]
