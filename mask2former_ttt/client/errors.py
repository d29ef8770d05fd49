"""Exceptions of the Python client: one base class, one subclass per thing a caller may want to handle."""

from __future__ import annotations


class ClientError(RuntimeError):
    """Something the service refused or reported; `code` is the server's error code (or a client-side one) and
    `message` its explanation; `close_code` the WebSocket close code when the socket was closed."""

    def __init__(self, code: str, message: str, close_code: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.close_code = close_code


class AuthError(ClientError):
    """Missing or wrong API key (HTTP 401/403, WebSocket `unauthorized` + close 1008)."""


class CapacityError(ClientError):
    """The service is full or the key's quota is used up (close 1013, HTTP 503/429): try again later."""


class NotFoundError(ClientError):
    """Unknown job / stream id (or one that belongs to another key)."""


class JobFailedError(ClientError):
    """A job ended `failed` or `cancelled`; `job` is its last record."""

    def __init__(self, job: dict) -> None:
        super().__init__(job.get("state", "failed"), f"job {job.get('id')} {job.get('state')}: {job.get('error')}")
        self.job = job


class SourceError(ClientError):
    """The video source (file, camera, URL) could not be read."""
