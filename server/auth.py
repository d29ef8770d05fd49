"""API-key auth for HTTP and WebSocket routes.

When `M2F_API_KEYS` is set, a request must carry one of the keys as `X-API-Key: <key>` or
`Authorization: Bearer <key>`; WebSocket clients may also pass `?api_key=<key>` (browsers cannot set headers).
With no keys configured, auth is off.
"""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request, WebSocket, status

from server.settings import Settings


def _presented_key(headers: object, query: object, allow_query: bool) -> str | None:
    key = headers.get("x-api-key")  # type: ignore[attr-defined]
    if key:
        return key
    auth = headers.get("authorization") or ""  # type: ignore[attr-defined]
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    if allow_query:
        return query.get("api_key")  # type: ignore[attr-defined]
    return None


def key_is_valid(settings: Settings, key: str | None) -> bool:
    """Constant-time comparison against every configured key."""
    if not settings.auth_enabled:
        return True
    if not key:
        return False
    ok = False
    for valid in settings.api_keys:
        ok |= hmac.compare_digest(key.encode(), valid.encode())
    return ok


def require_api_key(request: Request) -> None:
    """FastAPI dependency for HTTP routes: 401 without a valid key (when auth is on)."""
    settings: Settings = request.app.state.settings
    if not settings.auth_enabled:
        return
    key = _presented_key(request.headers, request.query_params, allow_query=False)
    if not key_is_valid(settings, key):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="missing or invalid API key: send X-API-Key or Authorization: Bearer",
            headers={"WWW-Authenticate": "Bearer"},
        )


def websocket_authorized(websocket: WebSocket) -> bool:
    """True if the WebSocket handshake carries a valid key (header or `?api_key=`), or auth is off."""
    settings: Settings = websocket.app.state.settings
    if not settings.auth_enabled:
        return True
    return key_is_valid(settings, _presented_key(websocket.headers, websocket.query_params, allow_query=True))
