"""Map the streaming API's `error` messages and close codes (docs/websocket-protocol.md §6) to exceptions."""

from __future__ import annotations

from websockets.exceptions import ConnectionClosed

from .errors import AuthError, CapacityError, ClientError, NotFoundError

CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008
CLOSE_SERVICE_RESTART = 1012
CLOSE_TRY_AGAIN = 1013
CLOSE_BAD_GATEWAY = 1014
CLOSE_NOT_FOUND = 4404
#: error codes after which the stream goes on (the others close the socket)
NON_FATAL = frozenset({"bad_image", "adapter_error", "bad_message", "encode_failed"})


def is_fatal(msg: dict) -> bool:
    """True for an `error` message that ends the stream (the server closes right after it)."""
    code = str(msg.get("code", ""))
    return code not in NON_FATAL and not code.endswith("_failed") and "frame_id" not in msg


def error_from_message(msg: dict, close_code: int | None = None) -> ClientError:
    """The exception for a fatal `error` message."""
    code, message = str(msg.get("code", "error")), str(msg.get("message", ""))
    if code in ("capacity", "quota"):
        return CapacityError(code, message, close_code or CLOSE_TRY_AGAIN)
    if code == "unauthorized":
        return AuthError(code, message, close_code or CLOSE_POLICY)
    if code == "not_found":
        return NotFoundError(code, message, close_code or CLOSE_NOT_FOUND)
    return ClientError(code, message, close_code)


def error_from_close(exc: ConnectionClosed, last_error: dict | None = None) -> ClientError:
    """The exception for a socket closed before the stream ended (the server's last `error` message, if any,
    says why better than the close reason, which is cut to 123 bytes)."""
    rcvd = exc.rcvd
    code = rcvd.code if rcvd is not None else None
    reason = (rcvd.reason if rcvd is not None else "") or ""
    if last_error is not None:
        return error_from_message(last_error, code)
    if code == CLOSE_TRY_AGAIN:
        return CapacityError("capacity", reason or "the service is full: try again later", code)
    if code == CLOSE_POLICY:
        return AuthError("policy", reason or "closed by the server (policy violation)", code)
    if code == CLOSE_SERVICE_RESTART:
        return ClientError("restart", reason or "the service is restarting: reconnect later", code)
    if code == CLOSE_NOT_FOUND:
        return NotFoundError("not_found", reason or "not found", code)
    if code == CLOSE_BAD_GATEWAY:
        return ClientError("camera_failed", reason or "camera unavailable", code)
    return ClientError("closed", f"the server closed the connection (code {code}): {reason or 'no reason'}", code)
