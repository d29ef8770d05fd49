"""RTSP cameras followed by the service: results of one camera over `WS /v1/streams/{id}/results`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from .errors import ClientError
from .ws_errors import error_from_close, error_from_message


def camera_messages(ws_url: str, stream_id: str, api_key: str | None, timeout_s: float = 60.0,
                    open_timeout_s: float = 30.0) -> Iterator[dict[str, Any]]:
    """The messages of a camera's results socket: `subscribed` (its status) first, then `result`, per-frame
    `error` and `state` messages; ends after `closed` (the stream was deleted). With `api_key` the first message
    sent is `{"type": "auth", "api_key": ...}` (never the URL). Raises `AuthError` (wrong key), `NotFoundError`
    (unknown id: close 4404), `ClientError("camera_failed")` (close 1014) or `ClientError("timeout")`."""
    with connect(f"{ws_url}/v1/streams/{stream_id}/results", max_size=None, open_timeout=open_timeout_s) as ws:
        if api_key:
            ws.send(json.dumps({"type": "auth", "api_key": api_key}))
        last_error: dict | None = None
        while True:
            try:
                msg = json.loads(ws.recv(timeout=timeout_s))
            except ConnectionClosed as exc:
                raise error_from_close(exc, last_error) from None
            except TimeoutError:
                raise ClientError("timeout", f"no message from camera {stream_id} for {timeout_s:g} s") from None
            kind = msg.get("type")
            if kind == "error" and "frame_id" not in msg:
                last_error = msg
                if msg.get("code") in ("unauthorized", "not_found"):
                    raise error_from_message(msg)
                continue  # the close that follows raises, with this message
            yield msg
            if kind == "closed":
                return
