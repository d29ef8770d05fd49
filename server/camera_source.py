"""The camera stack's entry points for the stream registry, loaded with the first camera (PyAV is not imported
before one is used)."""

from __future__ import annotations

from typing import Any

__all__ = ["default_source_factory", "default_url_check", "redact"]


def default_source_factory(**kwargs: Any) -> Any:
    """A `server.sources.rtsp.RtspSource` with these arguments."""
    from server.sources.rtsp import RtspSource

    return RtspSource(**kwargs)


def default_url_check(url: str, allowed_hosts: list[str] | None) -> None:
    """A camera URL: `rtsp://` / `rtsps://` (what the relay speaks) to an allowed host (`M2F_RTSP_ALLOWED_HOSTS`)."""
    from server.sources.rtsp import check_url_allowed

    check_url_allowed(url, allowed_hosts=allowed_hosts)


def redact(url: str) -> str:
    """The URL without its credentials, for logs and status."""
    from server.sources.rtsp import redact_url

    return redact_url(url)
