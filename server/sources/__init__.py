"""Frame sources for the streaming server (RTSP cameras, ...)."""

from .base import FrameSink, FrameSource, SourceState, SourceStats, StateCallback
from .rtsp import RtspConnectError, RtspSource
from .url_policy import check_url_allowed, redact_url

__all__ = [
    "FrameSink",
    "FrameSource",
    "RtspConnectError",
    "RtspSource",
    "SourceState",
    "SourceStats",
    "StateCallback",
    "check_url_allowed",
    "redact_url",
]
