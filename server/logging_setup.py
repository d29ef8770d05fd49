"""Structured logs: one line per record as `ts=... level=... logger=... msg="..." key=value ...`.

Extra fields are passed as `logger.info("...", extra={"kv": {"stream": sid, "frames": n}})`.
"""

from __future__ import annotations

import logging
import re
import time

# API keys that clients put in URLs (`?api_key=`) or headers must never reach a log line.
_SECRETS = re.compile(r"(?i)(api_key=|x-api-key[:=]\s*|bearer\s+)[^&\s\"'\]]+")


def redact_secrets(text: str) -> str:
    """`text` with the values of `api_key=`, `X-API-Key:` and `Bearer` replaced by `[redacted]`."""
    return _SECRETS.sub(r"\1[redacted]", text)


def _quote(value: object) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' "=\n'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


class KeyValueFormatter(logging.Formatter):
    """Formats records as key=value pairs (logfmt), appending `record.kv` when present; secrets redacted."""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        parts = [
            f"ts={ts}",
            f"level={record.levelname.lower()}",
            f"logger={record.name}",
            f"msg={_quote(record.getMessage())}",
        ]
        for key, value in (getattr(record, "kv", None) or {}).items():
            parts.append(f"{key}={_quote(value)}")
        if record.exc_info:
            parts.append(f"exc={_quote(self.formatException(record.exc_info))}")
        return redact_secrets(" ".join(parts))


def setup_logging(level: str = "INFO") -> None:
    """Route the root logger (and uvicorn's) through one key=value handler on stderr."""
    handler = logging.StreamHandler()
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True


def kv(**fields: object) -> dict[str, dict[str, object]]:
    """`extra=` argument carrying structured fields: `log.info("opened", extra=kv(stream=sid))`."""
    return {"kv": fields}
