"""Which camera URLs a client may ask the service to pull: scheme and host allowlists.

:func:`check_url_allowed` validates a client-supplied URL (scheme, host, port; no whitespace or control
characters) against the configured schemes and hosts; hosts match exact names / IPs, ``*.suffix``
wildcards or CIDR networks (:func:`host_matches`).  Error messages never show passwords.
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from collections.abc import Iterable

from mask2former_ttt.video_io import redact_url

__all__ = ["check_url_allowed", "host_matches", "redact_url"]


def host_matches(host: str, pattern: str) -> bool:
    """Match one host against an allowlist entry.

    Entries are exact host names / IP addresses (case-insensitive), ``*.suffix``
    wildcards (matching any sub-domain, not the bare suffix), or CIDR networks
    such as ``10.0.0.0/8`` (matching IP-literal hosts only).
    """
    pattern = pattern.strip().lower().strip("[]")
    host = host.lower()
    if not pattern:
        return False
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    if "/" in pattern:
        try:
            network = ipaddress.ip_network(pattern, strict=False)
            return ipaddress.ip_address(host) in network
        except ValueError:
            return False
    try:  # normalise IP spellings (e.g. IPv6 zero compression)
        return ipaddress.ip_address(host) == ipaddress.ip_address(pattern)
    except ValueError:
        return host == pattern


def check_url_allowed(
    url: str,
    allowed_schemes: Iterable[str] = ("rtsp", "rtsps"),
    allowed_hosts: list[str] | None = None,
) -> urllib.parse.SplitResult:
    """Validate a client-supplied camera URL; raise ``ValueError`` if it is not allowed.

    Args:
        url: the URL, e.g. ``rtsp://user:pw@10.0.0.7:554/stream1``.
        allowed_schemes: accepted schemes (case-insensitive).
        allowed_hosts: if not None, the host must match one entry: an exact
            name or IP, a ``*.example.com`` wildcard, or a CIDR network
            (``192.168.0.0/16``).  ``None`` allows any host.

    Returns:
        The parsed URL.

    Raises:
        ValueError: with a message naming the offending part (passwords are redacted).
    """
    if not isinstance(url, str) or not url.strip():
        raise ValueError("camera URL is empty")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise ValueError("camera URL must not contain whitespace or control characters")
    shown = redact_url(url)
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"camera URL {shown!r} is malformed: {exc}") from None
    schemes = tuple(s.lower() for s in allowed_schemes)
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        raise ValueError(
            f"camera URL scheme {scheme or '(none)'!r} is not allowed in {shown!r}; "
            f"allowed schemes: {', '.join(schemes)}"
        )
    host = parts.hostname
    if not host:
        raise ValueError(f"camera URL {shown!r} has no host")
    if port == 0:
        raise ValueError(f"camera URL {shown!r} has an invalid port 0")
    if allowed_hosts is not None and not any(host_matches(host, p) for p in allowed_hosts):
        raise ValueError(
            f"camera host {host!r} is not in the allowed hosts list ({', '.join(allowed_hosts) or 'empty'})"
        )
    return parts
