"""Who is on a WebSocket: the key from the handshake (`X-API-Key`, Bearer, legacy `?api_key=`) or, for browsers
that cannot set headers, from the client's first message, so keys never travel in URLs (which end up in logs)."""

from __future__ import annotations

import asyncio
import json

from fastapi import WebSocket

from server.auth import Principal, websocket_principal
from server.settings import Settings
from server.wire.inbound import CLOSE_POLICY
from server.wire.outbound import close_with_error

START_TIMEOUT_S = 10.0  # seconds a WebSocket client has for its first message (`start`, or `auth` on a results socket)
UNAUTHORIZED_WS = 'missing or invalid API key: send X-API-Key / Bearer, or {"type": "auth", "api_key": ...} first'


async def close_unauthorized(websocket: WebSocket, message: str = UNAUTHORIZED_WS) -> None:
    """Tell the client why, then close with 1008 (policy violation)."""
    await close_with_error(websocket, CLOSE_POLICY, "unauthorized", message)


async def _first_message_key(websocket: WebSocket, timeout_s: float) -> str | None:
    try:
        msg = await asyncio.wait_for(websocket.receive(), timeout_s)
    except asyncio.TimeoutError:
        return None
    try:
        data = json.loads(msg.get("text") or "null")
    except (ValueError, RecursionError):
        return None
    if isinstance(data, dict) and data.get("type") == "auth" and isinstance(data.get("api_key"), str):
        return data["api_key"]
    return None


async def authenticate_websocket(websocket: WebSocket, settings: Settings) -> Principal | None:
    """The caller of an accepted socket that sends nothing else first (a camera's results socket). Without a
    handshake key (and with auth on) the first message must be `{"type": "auth", "api_key": ...}`, within
    `START_TIMEOUT_S`. On failure the socket is closed (1008) and None returned."""
    principal = websocket_principal(websocket)
    if principal is None and settings.auth_enabled:
        principal = websocket_principal(websocket, await _first_message_key(websocket, START_TIMEOUT_S))
    if principal is None:
        await close_unauthorized(websocket)
    return principal
