"""What a caller may learn about a camera's trouble.

The diagnosis (`SourceStats.last_error`: "connection refused by 127.0.0.1:9 (nothing is listening there): ...",
"stream not found (rtsp 404 Not Found) ...", "camera redirected to ...") tells a refused port from a host that is
not a camera from one that does not answer. On a server shared by several API keys that would make the service a
port scanner of the networks it reaches, so tenant keys see only "camera unavailable (N failed connection
attempts)". Admin keys see the diagnosis, and so does every caller of a server without API keys (a single-user
server: the caller is the anonymous admin, the owner of every camera).
"""

from __future__ import annotations

from typing import Any

from server.auth import Principal

#: The key of a `state` message's diagnosis while it waits in a subscriber queue (removed before sending).
DIAGNOSIS = "_diagnosis"


def sees_diagnosis(principal: Principal | None) -> bool:
    """True for admin keys and for everyone when API keys are off (the anonymous caller is an admin)."""
    return principal is not None and principal.admin


def camera_error(stats: Any, principal: Principal | None) -> str | None:
    """A camera's `last_error` as `principal` may see it: the diagnosis, or the generic text (None: no error)."""
    from server.sources.rtsp import client_error  # the camera stack loads with the first camera

    if sees_diagnosis(principal):
        return getattr(stats, "last_error", None) or None
    return client_error(stats)


def for_subscriber(msg: Any, principal: Principal | None) -> Any:
    """A message of a camera's results socket as `principal` may see it: a `state` message's `last_error` becomes
    its diagnosis for those who may see it, and the private diagnosis field is dropped for everyone."""
    if not isinstance(msg, dict) or DIAGNOSIS not in msg:
        return msg
    out = {k: v for k, v in msg.items() if k != DIAGNOSIS}
    if sees_diagnosis(principal) and msg[DIAGNOSIS]:
        out["last_error"] = msg[DIAGNOSIS]
    return out
