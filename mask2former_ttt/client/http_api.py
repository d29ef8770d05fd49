"""HTTP calls of the client: one `httpx.Client` with the API key header, and service errors as exceptions."""

from __future__ import annotations

from typing import Any

import httpx

from .errors import AuthError, CapacityError, ClientError, NotFoundError


def make_http(base_url: str, api_key: str | None, timeout_s: float) -> httpx.Client:
    """An httpx client for `base_url` that sends `X-API-Key` when a key is given."""
    headers = {"X-API-Key": api_key} if api_key else {}
    return httpx.Client(base_url=base_url, headers=headers, timeout=timeout_s)


def check(response: httpx.Response) -> httpx.Response:
    """The response if it succeeded; else the matching `ClientError` subclass with the server's `detail`."""
    if response.is_success:
        return response
    try:
        detail: Any = response.json().get("detail", response.text)
    except ValueError:
        detail = response.text
    message = f"{response.request.method} {response.request.url.path}: HTTP {response.status_code}: {detail}"
    status = response.status_code
    if status in (401, 403):
        raise AuthError("unauthorized" if status == 401 else "forbidden", message)
    if status == 404:
        raise NotFoundError("not_found", message)
    if status in (429, 503):
        raise CapacityError("quota" if status == 429 else "capacity", message)
    raise ClientError(f"http_{status}", message)
