"""Live video inputs: one reconnecting reader for the service's cameras and `m2f-ttt segment`.

- :mod:`.reader`: :class:`LiveReader` (open with FFmpeg, decode, reconnect with backoff, state and stats);
- :mod:`.diagnosis`: what went wrong when an input does not open, in one sentence;
- :mod:`.state`: :class:`SourceState`, :class:`SourceStats` (also the service's source types);
- :mod:`.sources`: `open_source` for `segment` (files via `video_io`, live inputs via the reader).
"""

from .diagnosis import LiveConnectError, describe_open_error, probe_tcp
from .reader import LiveReader, input_options
from .state import SourceState, SourceStats

__all__ = [
    "LiveConnectError",
    "LiveReader",
    "SourceState",
    "SourceStats",
    "describe_open_error",
    "input_options",
    "probe_tcp",
]
