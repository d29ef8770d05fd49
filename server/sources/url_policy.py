"""Which camera URLs a client may ask the service to pull: schemes, host names and the addresses they resolve to.

Two checks, both needed:

* :func:`check_url_allowed` (when a stream is created): scheme, host, port, no whitespace or control characters;
  the host must match the allowlist (names, ``*.suffix`` wildcards, IPs, CIDR networks: :func:`host_matches`);
  an IP-literal host must also pass the address rule below.
* :meth:`HostPolicy.resolve` (before every connection attempt): resolve the host and check **every** address;
  the caller connects to one of those checked addresses itself (:mod:`server.sources.rtsp_relay`), so DNS
  cannot answer differently between the check and the connection.

The address rule: an address matched by an IP or CIDR entry is allowed; otherwise it must be public
(:func:`non_public_reason`: loopback, private, link-local, CGNAT, multicast, ... are refused) and the host
must be allowed by name (or the allowlist be unset). So a name entry such as ``cam.lan`` allows a public
address, while ``cam.lan`` resolving to ``192.168.1.9`` also needs ``192.168.1.9`` (or ``192.168.0.0/16``)
in the list.  Error messages never show passwords.
"""

from __future__ import annotations

import ipaddress
import socket
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from mask2former_ttt.video_io import redact_url

__all__ = [
    "AddressRefused",
    "HostPolicy",
    "IPAddress",
    "Resolver",
    "check_url_allowed",
    "host_matches",
    "is_ip_literal",
    "non_public_reason",
    "redact_url",
    "system_resolver",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: ``resolver(host, port)`` -> the host's IP addresses (strings), in connection order; raises ``OSError``.
Resolver = Callable[[str, int], list[str]]

SETTING = "M2F_RTSP_ALLOWED_HOSTS"
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class AddressRefused(ValueError):
    """The host resolved to an address the policy refuses (the message names host and address)."""


def _ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None


def is_ip_literal(host: str) -> bool:
    """True if ``host`` is an IP address (IPv6 with or without brackets), not a name."""
    return _ip(host) is not None


def _entry_network(pattern: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """The network of an IP or CIDR allowlist entry; None for name entries."""
    pattern = pattern.strip().lower().strip("[]")
    try:
        return ipaddress.ip_network(pattern, strict=False)
    except ValueError:
        return None


def host_matches(host: str, pattern: str) -> bool:
    """Match one host against an allowlist entry.

    Entries are exact host names / IP addresses (case-insensitive), ``*.suffix``
    wildcards (matching any sub-domain, not the bare suffix), or CIDR networks
    such as ``10.0.0.0/8`` (matching IP-literal hosts only).
    """
    pattern = pattern.strip().lower().strip("[]")
    host = host.lower().strip("[]")
    if not pattern:
        return False
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    if "/" in pattern:
        network, address = _entry_network(pattern), _ip(host)
        return network is not None and address is not None and address in network
    address, entry = _ip(host), _ip(pattern)
    if address is not None and entry is not None:  # normalise IP spellings (e.g. IPv6 zero compression)
        return address == entry
    return host == pattern


def non_public_reason(address: IPAddress) -> str | None:
    """Why ``address`` is not a public unicast address (None if it is one).

    IPv4-mapped / NAT64 / 6to4 IPv6 addresses are judged by the IPv4 address they carry.
    """
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            inner = non_public_reason(embedded)
            return f"{inner} (embedded in {address})" if inner else None
        if address.teredo is not None:
            return "a Teredo tunnel address"
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("carrier-grade NAT (100.64.0.0/10)", isinstance(address, ipaddress.IPv4Address) and address in _CGNAT),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
        ("not globally routable", not address.is_global),
    )
    return next((f"a {name} address" for name, hit in checks if hit), None)


def system_resolver(host: str, port: int) -> list[str]:
    """The host's addresses from the system resolver (``getaddrinfo``), duplicates removed, order kept."""
    literal = _ip(host)
    if literal is not None:
        return [str(literal)]
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class HostPolicy:
    """The camera host rule of one service: the allowlist (None = any host) and the resolver to use."""

    allowed_hosts: tuple[str, ...] | None = None
    resolver: Resolver = system_resolver

    @classmethod
    def of(cls, allowed_hosts: Sequence[str] | None, resolver: Resolver | None = None) -> HostPolicy:
        hosts = None if allowed_hosts is None else tuple(allowed_hosts)
        return cls(hosts, resolver or system_resolver)

    def name_allowed(self, host: str) -> bool:
        """True if the allowlist is unset or an entry matches ``host`` itself (name, wildcard, IP or CIDR)."""
        return self.allowed_hosts is None or any(host_matches(host, p) for p in self.allowed_hosts)

    def address_refusal(self, host: str, address: IPAddress) -> str | None:
        """Why connecting to ``address`` (which ``host`` resolved to) is refused; None if allowed."""
        for pattern in self.allowed_hosts or ():
            network = _entry_network(pattern)
            if network is not None and address in network:
                return None  # listed explicitly, by IP or CIDR
        if not self.name_allowed(host):
            return f"{address} is not in the allowed hosts list"
        reason = non_public_reason(address)
        if reason is not None:
            return f"{address} is {reason}; such addresses are refused unless {SETTING} lists them (IP or CIDR)"
        return None

    def resolve(self, host: str, port: int) -> list[IPAddress]:
        """Resolve ``host`` and check every address; returns them (connect to these, not to the name).

        Raises:
            OSError: the name does not resolve (``socket.gaierror``) or resolves to nothing.
            AddressRefused: one of the addresses is refused (all must pass: a name must not mix a public
                address with an internal one).
        """
        addresses = [a for a in (_ip(text) for text in self.resolver(host, port)) if a is not None]
        if not addresses:
            raise OSError(f"host name {host!r} resolves to no address")
        for address in addresses:
            refusal = self.address_refusal(host, address)
            if refusal is not None:
                raise AddressRefused(f"camera host {host!r} resolves to {refusal}")
        return addresses


def _empty_list_hint() -> str:
    return (f"the list is empty, so no camera is allowed: set {SETTING} to the camera host names, IPs or CIDR "
            f"networks (it is empty by default when M2F_API_KEYS is set)")


def check_url_allowed(
    url: str,
    allowed_schemes: Iterable[str] = ("rtsp", "rtsps"),
    allowed_hosts: Sequence[str] | None = None,
) -> urllib.parse.SplitResult:
    """Validate a client-supplied camera URL; raise ``ValueError`` if it is not allowed.

    Args:
        url: the URL, e.g. ``rtsp://user:pw@10.0.0.7:554/stream1``.
        allowed_schemes: accepted schemes (case-insensitive).
        allowed_hosts: if not None, the host must match one entry: an exact
            name or IP, a ``*.example.com`` wildcard, or a CIDR network
            (``192.168.0.0/16``).  ``None`` allows any host name.  Either way an
            IP-literal host must be public unless an IP / CIDR entry lists it
            (names are resolved and checked at connection time: :meth:`HostPolicy.resolve`).

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
    policy = HostPolicy.of(allowed_hosts)
    if not policy.name_allowed(host):
        listed = ", ".join(allowed_hosts or ()) or _empty_list_hint()
        raise ValueError(f"camera host {host!r} is not in the allowed hosts list ({listed})")
    literal = _ip(host)
    if literal is not None and (refusal := policy.address_refusal(host, literal)) is not None:
        raise ValueError(f"camera host {refusal}")
    return parts
