"""Service settings, read from the environment: `M2F_<GROUP>_<FIELD>` for a grouped setting (e.g.
`M2F_STREAMS_MAX=4` sets `streams.max`, `M2F_RTSP_RETRY_FOR_S=600` sets `rtsp.retry_for_s`) and `M2F_<FIELD>`
for the few process-wide ones (`M2F_HOST`, `M2F_PORT`, `M2F_LOG_LEVEL`, `M2F_BACKEND`).

Lists are comma-separated (`M2F_API_KEYS=key1,key2`); sizes accept units (`M2F_UPLOAD_MAX_BYTES=512MiB`).
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from model.postprocess import DEFAULT_MIN_AREA, DEFAULT_SCORE_THRESHOLD, InstanceFilter
from server.settings_groups import (
    ApiSettings,
    CheckpointSettings,
    DataSettings,
    Group,
    JobSettings,
    ModelSettings,
    Policy,
    RaySettings,
    RecordingSettings,
    RtspSettings,
    StreamLimits,
    TTTSettings,
    UploadLimits,
    Unwatched,
    WebhookSettings,
    WorkerSettings,
)

ENV_PREFIX = "M2F_"
REPLACED_NAMES = {  # names the service no longer reads -> the setting that replaced them ("" or a note: none did)
    "M2F_ADMIN_API_KEYS": "M2F_API_ADMIN_KEYS",
    "M2F_ALLOWED_ORIGINS": "M2F_API_ALLOWED_ORIGINS",
    "M2F_CHECKPOINTS_PER_STREAM": "M2F_CHECKPOINT_PER_STREAM",
    "M2F_CROSS_STREAM_BATCH": "M2F_WORKER_CROSS_STREAM_BATCH",
    "M2F_DECODE_THREADS": "",
    "M2F_DEVICE": "M2F_MODEL_DEVICE",
    "M2F_INSTANCE_MIN_AREA": "",
    "M2F_INSTANCE_SCORE_THRESHOLD": "",
    "M2F_JOBS_MAX_WIDTH": "",
    "M2F_JOB_CHECKPOINT_S": "M2F_JOBS_CHECKPOINT_S",
    "M2F_JOB_MAX_WIDTH": "",
    "M2F_JOB_WEBHOOK_URL": "M2F_WEBHOOK_URL",
    "M2F_MAX_CONCURRENT_JOBS": "M2F_JOBS_MAX_CONCURRENT",
    "M2F_MAX_DURATION_S": "uploads are limited by M2F_UPLOAD_MAX_FRAMES",
    "M2F_MAX_FRAME_BYTES": "M2F_STREAMS_MAX_FRAME_BYTES",
    "M2F_MAX_FRAME_PIXELS": "M2F_STREAMS_MAX_FRAME_PIXELS",
    "M2F_MAX_JOBS_PER_KEY": "M2F_JOBS_MAX_PER_KEY",
    "M2F_MAX_QUEUED_JOBS_PER_KEY": "M2F_JOBS_MAX_QUEUED_PER_KEY",
    "M2F_MAX_RESULT_SIDE": "",
    "M2F_MAX_STATE_MEMORY": "M2F_STREAMS_MAX_STATE_MEMORY",
    "M2F_MAX_STREAMS": "M2F_STREAMS_MAX",
    "M2F_MAX_STREAMS_PER_KEY": "M2F_STREAMS_MAX_PER_KEY",
    "M2F_QUEUE_SIZE": "",
    "M2F_RAY_HEALTH_INTERVAL_S": "",
    "M2F_RECORDINGS_DIR": "M2F_RECORDING_DIR",
    "M2F_RECORDING_SEGMENT_FRAMES": "",
    "M2F_RTSP_ALLOWED_SCHEMES": "",
    "M2F_RTSP_BACKOFF_MAX_S": "",
    "M2F_RTSP_MAX_FAILURES": "M2F_RTSP_RETRY_FOR_S",
    "M2F_RTSP_OPEN_TIMEOUT_S": "",
    "M2F_RTSP_STALL_TIMEOUT_S": "",
    "M2F_SEED": "",
    "M2F_START_TIMEOUT_S": "",
    "M2F_STATES_DIR": "M2F_CHECKPOINT_DIR",
    "M2F_STREAMS_MAX_RESULT_SIDE": "",
    "M2F_STREAMS_QUEUE_SIZE": "",
    "M2F_STREAMS_START_TIMEOUT_S": "",
    "M2F_TORCH_THREADS": "M2F_WORKER_TORCH_THREADS",
    "M2F_UPLOAD_MAX_DURATION_S": "uploads are limited by M2F_UPLOAD_MAX_FRAMES",
    "M2F_WEBHOOK_BACKOFF_S": "",
    "M2F_WEBHOOK_MAX_ATTEMPTS": "",
    "M2F_WEBHOOK_TIMEOUT_S": "",
    "M2F_WS_IDLE_TIMEOUT_S": "M2F_STREAMS_IDLE_TIMEOUT_S",
}
__all__ = ["ENV_PREFIX", "Group", "Policy", "Settings", "Unwatched"]


def replaced_message(old: str, new: str) -> str:
    """The one-line refusal of `old`: `... is now M2F_...`, or `... is no longer a setting (note)`."""
    if new.startswith(ENV_PREFIX):
        return f"{old} is now {new}"
    return f"{old} is no longer a setting" + (f" ({new})" if new else "")


class Settings(BaseSettings):
    """Everything the service can be configured with; see the field descriptions (also in `/docs`)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="_", env_nested_max_split=1, extra="ignore"
    )

    # the process: listening socket of `m2f-ttt serve` (its --host / --port flags win), logging, backend
    host: str = Field("127.0.0.1", description="interface `m2f-ttt serve` binds (0.0.0.0: all interfaces)")
    port: int = Field(8000, ge=1, le=65535, description="TCP port `m2f-ttt serve` listens on")
    log_level: str = Field("INFO", description="DEBUG | INFO | WARNING | ERROR")
    backend: Literal["local", "ray"] = Field(
        "local", description="local: one process owns the device; ray: sticky per-stream device-worker actors"
    )

    data: DataSettings = Field(default_factory=DataSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    ttt: TTTSettings = Field(default_factory=TTTSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    streams: StreamLimits = Field(default_factory=StreamLimits)
    upload: UploadLimits = Field(default_factory=UploadLimits)
    jobs: JobSettings = Field(default_factory=JobSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    checkpoint: CheckpointSettings = Field(default_factory=CheckpointSettings)
    rtsp: RtspSettings = Field(default_factory=RtspSettings)
    recording: RecordingSettings = Field(default_factory=RecordingSettings)
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)
    ray: RaySettings = Field(default_factory=RaySettings)

    @classmethod
    def groups(cls) -> dict[str, type[Group]]:
        """The groups by name (`M2F_<NAME>_...`)."""
        out: dict[str, type[Group]] = {}
        for name, field in cls.model_fields.items():
            if isinstance(field.annotation, type) and issubclass(field.annotation, Group):
                out[name] = field.annotation
        return out

    @classmethod
    def env_names(cls) -> set[str]:
        """Every environment variable the service reads (`M2F_HOST`, `M2F_STREAMS_MAX`, ...)."""
        groups = cls.groups()
        names = {f"{ENV_PREFIX}{name.upper()}" for name in cls.model_fields if name not in groups}
        for group, model in groups.items():
            names |= {f"{ENV_PREFIX}{group.upper()}_{field.upper()}" for field in model.model_fields}
        return names

    @classmethod
    def from_flat(cls, **values: Any) -> Settings:
        """Settings from values named like their environment variables without `M2F_` (`streams_max=4`,
        `rtsp_allowed_hosts=[...]`, `host=...`); the environment fills in the others."""
        groups = cls.groups()
        nested: dict[str, Any] = {}
        for key, value in values.items():
            group, _, field = key.partition("_")
            if group in groups and field in groups[group].model_fields:
                nested.setdefault(group, {})[field] = value
            elif key in cls.model_fields and key not in groups:
                nested[key] = value
            else:
                raise TypeError(f"no setting {ENV_PREFIX}{key.upper()}")
        return cls(**nested)

    @model_validator(mode="before")
    @classmethod
    def _no_replaced_names(cls, values: Any) -> Any:
        """A name the service no longer reads (`M2F_MAX_STREAMS`, `M2F_RTSP_OPEN_TIMEOUT_S`) in the environment is an
        error naming what replaced it (or saying it is no longer a setting), not a value silently ignored."""
        set_names = {name.upper() for name in os.environ}
        found = [name for name in REPLACED_NAMES if name in set_names]
        if found:
            told = [replaced_message(old, REPLACED_NAMES[old]) for old in found]
            raise ValueError("renamed or removed settings (docs/configuration.md): " + "; ".join(told))
        return values

    @field_validator("port", mode="before")
    @classmethod
    def _port_number(cls, value: object) -> object:
        """`M2F_PORT=tcp://10.0.0.5:8000` is Kubernetes' link variable of a Service named `m2f`: say so."""
        if isinstance(value, str) and "://" in value:
            raise ValueError(f"M2F_PORT={value!r} is not a port number; Kubernetes sets such a value for a Service "
                             "named `m2f`: set M2F_PORT explicitly or `enableServiceLinks: false`")
        return value

    @model_validator(mode="after")
    def _data_under_one_dir(self) -> Settings:
        """Jobs, checkpoints and recordings without a directory of their own go under `data.dir`."""
        for group, sub in ((self.jobs, "jobs"), (self.checkpoint, "stream-states"), (self.recording, "recordings")):
            if group.dir is None:
                group.dir = self.data.dir / sub
        return self

    @model_validator(mode="after")
    def _cameras_denied_by_default_with_auth(self) -> Settings:
        """With API keys, an unset camera allowlist means no camera host (not any host)."""
        if self.rtsp.allowed_hosts is None and self.auth_enabled:
            self.rtsp.allowed_hosts = []
        return self

    def instance_filter(self, score_threshold: float | None = None, min_area: int | None = None) -> InstanceFilter:
        """A stream's / job's instance filter: the values it asked for, `model.postprocess`'s defaults for the
        others (`DEFAULT_SCORE_THRESHOLD`, `DEFAULT_MIN_AREA`)."""
        score = DEFAULT_SCORE_THRESHOLD if score_threshold is None else score_threshold
        return InstanceFilter(score, DEFAULT_MIN_AREA if min_area is None else min_area)

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api.keys or self.api.admin_keys)
