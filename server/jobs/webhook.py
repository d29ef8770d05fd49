"""Job webhooks: one signed JSON POST when a job ends (succeeded / failed / cancelled), off the job's thread.

Where: the job's `webhook_url` form field, else `M2F_WEBHOOK_URL`. Body (UTF-8 JSON):
`{"event": "job.finished", "job_id", "state", "frames", "frames_total", "results", "archive", "error", "finished"}`.

Signing (`M2F_WEBHOOK_SECRET` set): `X-M2F-Timestamp: <unix seconds>` and
`X-M2F-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + raw body)>`. A receiver recomputes the HMAC
over the raw bytes, compares in constant time and refuses timestamps older than a few minutes (replay).
`X-M2F-Delivery` is the same id on every attempt of one delivery (deduplicate on it).

URL policy (SSRF): http/https only, no credentials in the URL, the host must pass `M2F_WEBHOOK_ALLOWED_HOSTS`
(names, `*.suffix`, IPs, CIDR; unset: any name) and **every** address it resolves to must be public unless an
IP / CIDR entry lists it (the address rule of `server.sources.url_policy`). The connection goes to the checked
address (no second DNS lookup) and redirects are not followed.

Delivery: up to `MAX_ATTEMPTS` (5) attempts, each within `ATTEMPT_TIMEOUT_S` (5 s); a 2xx answer ends it;
between attempts a full-jitter wait from `BACKOFF_S` (1 s), doubling. Undelivered calls are logged.
"""

from __future__ import annotations

import hashlib
import ipaddress
import hmac
import http.client
import json
import logging
import socket
import threading
import time
import urllib.parse
import uuid
from collections.abc import Sequence
from typing import Any

from mask2former_ttt.live.backoff import Backoff
from server.logging_setup import kv
from server.settings import Settings
from server.sources.url_policy import (
    AddressRefused, IPAddress, Resolver, host_matches, is_ip_literal, non_public_reason, redact_url, system_resolver,
)

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-M2F-Signature"
TIMESTAMP_HEADER = "X-M2F-Timestamp"
DELIVERY_HEADER = "X-M2F-Delivery"
SCHEMES = ("http", "https")
SETTING = "M2F_WEBHOOK_ALLOWED_HOSTS"
ATTEMPT_TIMEOUT_S = 5.0  # seconds per webhook attempt (connect + response)
MAX_ATTEMPTS = 5  # webhook attempts before a delivery is given up (logged)
BACKOFF_S = 1.0  # wait before the 2nd webhook attempt; doubled before each next one (full jitter)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>`: HMAC-SHA256 with `secret` over `"<timestamp>." + body` (the X-M2F-Signature value)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str, max_age_s: float = 300.0) -> bool:
    """Receiver side: the signature matches and the timestamp is within `max_age_s` of now."""
    try:
        fresh = abs(time.time() - float(timestamp)) <= max_age_s
    except ValueError:
        return False
    return fresh and hmac.compare_digest(sign(secret, timestamp, body), signature)


def _address_refusal(host: str, address: IPAddress, allowed: Sequence[str] | None) -> str | None:
    """Why calling `address` (which `host` resolved to) is refused; None if allowed."""
    if any(host_matches(str(address), p) for p in allowed or ()):
        return None  # listed explicitly by IP or CIDR
    if allowed is not None and not any(host_matches(host, p) for p in allowed):
        return f"webhook host {host!r} is not in the allowed hosts list ({', '.join(allowed) or 'empty'}, {SETTING})"
    reason = non_public_reason(address)
    if reason is not None:
        return f"webhook host {host!r} resolves to {address}, {reason}; list it (IP or CIDR) in {SETTING} to allow it"
    return None


def check_webhook_url(url: str, allowed_hosts: Sequence[str] | None) -> urllib.parse.SplitResult:
    """Static checks of a webhook URL (ValueError naming the problem); names are resolved and checked per call."""
    if not url or any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise ValueError("webhook URL is empty or contains whitespace / control characters")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise ValueError(f"webhook URL {redact_url(url)!r} is malformed: {exc}") from None
    if parts.scheme.lower() not in SCHEMES:
        raise ValueError(f"webhook URL scheme {parts.scheme or '(none)'!r} is not allowed; use http or https")
    if not parts.hostname:
        raise ValueError(f"webhook URL {redact_url(url)!r} has no host")
    if parts.username or parts.password:
        raise ValueError("webhook URL must not carry credentials; calls are signed with M2F_WEBHOOK_SECRET instead")
    if allowed_hosts is not None and not any(host_matches(parts.hostname, p) for p in allowed_hosts):
        raise ValueError(
            f"webhook host {parts.hostname!r} is not in the allowed hosts list "
            f"({', '.join(allowed_hosts) or 'empty'}, {SETTING})"
        )
    if is_ip_literal(parts.hostname):
        refusal = _address_refusal(parts.hostname, _resolve_literal(parts.hostname), allowed_hosts)
        if refusal:
            raise ValueError(refusal)
    return parts


def _resolve_literal(host: str) -> IPAddress:
    """The IP address of an IP-literal host (brackets allowed); ValueError otherwise."""
    return ipaddress.ip_address(host.strip("[]"))


class _Pinned(http.client.HTTPConnection):
    """HTTP connection to a checked address (the Host header keeps the name)."""

    def __init__(self, host: str, port: int | None, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedTLS(http.client.HTTPSConnection):
    """HTTPS connection to a checked address; the certificate is verified against the URL's host name."""

    def __init__(self, host: str, port: int | None, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def job_payload(job: Any) -> dict:
    """The JSON body of a job's webhook."""
    return {
        "event": "job.finished",
        "job_id": job.id,
        "state": job.state,
        "frames": job.frames_done,
        "frames_total": job.frames_total,
        "results": list(job.results),
        "archive": f"/v1/jobs/{job.id}/archive" if job.state == "succeeded" else None,
        "error": job.error,
        "finished": job.finished,
    }


class WebhookSender:
    """Sends webhooks on daemon threads with bounded retries; `stop()` cuts the waits between attempts short."""

    def __init__(self, settings: Settings, resolver: Resolver | None = None) -> None:
        self.settings = settings
        self.resolver = resolver or system_resolver
        self._stop = threading.Event()

    def notify(self, job: Any) -> threading.Thread | None:
        """Send the ended `job`'s webhook in the background (None: no URL configured for it)."""
        url = getattr(job, "webhook_url", None) or self.settings.webhook.url
        if not url:
            return None
        thread = threading.Thread(
            target=self.deliver, args=(url, job_payload(job)), name=f"webhook-{job.id}", daemon=True
        )
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()

    def deliver(self, url: str, payload: dict) -> bool:
        """POST `payload` to `url` until a 2xx answer or `MAX_ATTEMPTS` attempts; True if delivered."""
        raw = json.dumps(payload, separators=(",", ":")).encode()
        delivery, shown = uuid.uuid4().hex, redact_url(url)
        for attempt in Backoff(BACKOFF_S).attempts(MAX_ATTEMPTS, self._stop):
            try:
                status = self._post(url, raw, delivery)
                if 200 <= status < 300:
                    log.info("webhook delivered", extra=kv(url=shown, attempt=attempt, status=status, **_ids(payload)))
                    return True
                problem = f"HTTP {status}"
            except (OSError, ValueError, http.client.HTTPException) as exc:
                problem = f"{type(exc).__name__}: {exc}"
                if isinstance(exc, ValueError):  # the URL policy (AddressRefused too): retrying cannot help
                    log.warning("webhook refused by the URL policy", extra=kv(url=shown, error=problem))
                    return False
            log.info("webhook attempt failed", extra=kv(url=shown, attempt=attempt, error=problem, **_ids(payload)))
        log.warning("webhook not delivered", extra=kv(url=shown, attempts=attempt, **_ids(payload)))
        return False

    def _post(self, url: str, raw: bytes, delivery: str) -> int:
        """One attempt: check the URL, resolve and check every address, POST to the first one; the status."""
        s = self.settings
        parts = check_webhook_url(url, s.webhook.allowed_hosts)
        host, scheme = parts.hostname or "", parts.scheme.lower()
        port = parts.port or (443 if scheme == "https" else 80)
        addresses = [_resolve_literal(a) for a in self.resolver(host, port)]
        if not addresses:
            raise OSError(f"webhook host {host!r} resolves to no address")
        for address in addresses:
            refusal = _address_refusal(host, address, s.webhook.allowed_hosts)
            if refusal:
                raise AddressRefused(refusal)
        stamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "m2f-ttt-webhook/1",
            "X-M2F-Event": "job.finished",
            DELIVERY_HEADER: delivery,
            TIMESTAMP_HEADER: stamp,
        }
        if s.webhook.secret:
            headers[SIGNATURE_HEADER] = sign(s.webhook.secret, stamp, raw)
        conn_cls = _PinnedTLS if scheme == "https" else _Pinned
        conn = conn_cls(host, port, str(addresses[0]), ATTEMPT_TIMEOUT_S)
        try:
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            conn.request("POST", path, body=raw, headers=headers)
            response = conn.getresponse()
            response.read(65536)
            return response.status
        finally:
            conn.close()


def _ids(payload: dict) -> dict:
    return {"job": payload.get("job_id"), "state": payload.get("state")}
