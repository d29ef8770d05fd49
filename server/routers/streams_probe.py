"""`POST /v1/streams/test`: try a camera URL once before registering it (ok, or why not)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from pydantic import BaseModel, Field

from server import rtsp_streams
from server.auth import Principal
from server.camera_errors import camera_error
from server.camera_probe import probe_camera
from server.deps import Authorized, PrincipalDep, RtspDep, SettingsDep
from server.origin import SameOrigin
from server.rate_limit import RateLimiter
from server.schemas import error_responses

router = APIRouter(tags=["rtsp"], dependencies=[SameOrigin], responses=error_responses(401, 503))
PROBES_PER_MINUTE = 6  # per API key (one bucket for everyone without keys), in bursts of at most PROBE_BURST
PROBE_BURST = 3


class ProbeRequest(BaseModel):
    url: str = Field(..., description="rtsp:// or rtsps:// URL (credentials allowed; never echoed back)")


class ProbeResult(BaseModel):
    """How one connection attempt went; `reason` as the caller may see it (docs/api.md#camera-diagnostics)."""

    ok: bool = Field(description="a frame was decoded")
    reason: str | None = Field(description="why not (None when ok)")
    codec: str | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None


def probe_budget(request: Request, principal: PrincipalDep) -> Principal:
    """The caller, once its probe budget allows one more (429 with Retry-After otherwise)."""
    limiter = getattr(request.app.state, "probe_limiter", None)
    if limiter is None:
        limiter = request.app.state.probe_limiter = RateLimiter(PROBES_PER_MINUTE, PROBE_BURST)
    wait_s = limiter.take(principal.key_id)
    if wait_s > 0:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail=f"at most {PROBES_PER_MINUTE} camera probes a minute per API key: retry in {wait_s:.0f} s",
            headers={"Retry-After": str(max(1, round(wait_s)))},
        )
    return principal


@router.post(
    "/v1/streams/test",
    dependencies=[Authorized],
    response_model=ProbeResult,
    responses=error_responses(400, 403, 429),
)
async def test_stream(
    body: ProbeRequest,
    settings: SettingsDep,
    manager: RtspDep,
    principal: Annotated[Principal, Depends(probe_budget)],
) -> ProbeResult:
    """Open the URL once, as a camera stream would (same URL and address policy): `ok` with the stream's format,
    or the `reason` it failed (the diagnosis for admin keys and servers without keys, else the generic text)."""
    try:
        manager.url_check(body.url, settings.rtsp.allowed_hosts)
    except ValueError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=str(exc)) from None
    open_s, stall_s = rtsp_streams.CAMERA_OPEN_TIMEOUT_S, rtsp_streams.CAMERA_STALL_TIMEOUT_S
    outcome = await asyncio.to_thread(
        probe_camera, body.url, manager.source_factory, settings.rtsp.allowed_hosts, open_s, stall_s
    )
    stats = outcome.stats
    fields = {name: getattr(stats, name, None) for name in ("codec", "width", "height", "fps")}
    if outcome.ok:
        return ProbeResult(ok=True, reason=None, **fields)
    reason = camera_error(stats, principal) or f"no frame within {open_s + stall_s:g} s"
    return ProbeResult(ok=False, reason=reason, **fields)
