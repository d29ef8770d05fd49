"""Service settings, read from the environment with the prefix `M2F_` (e.g. `M2F_MAX_STREAMS=4`).

Lists are comma-separated (`M2F_API_KEYS=key1,key2`); sizes accept units (`M2F_UPLOAD_MAX_BYTES=512MiB`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import ByteSize, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from model.checkpoint import bundled_model_dir
from model.config import Task
from model.postprocess import DEFAULT_MIN_AREA, DEFAULT_SCORE_THRESHOLD, InstanceFilter

Policy = Literal["latest", "block"]
Unwatched = Literal["pause", "record", "run"]
CommaList = Annotated[list[str], NoDecode]


def _split(value: object) -> object:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


class Settings(BaseSettings):
    """Everything the service can be configured with; see the field descriptions (also in `/docs`)."""

    model_config = SettingsConfigDict(env_prefix="M2F_", extra="ignore")

    # listening socket of `m2f-ttt serve` (its --host / --port flags win)
    host: str = Field("127.0.0.1", description="interface `m2f-ttt serve` binds (0.0.0.0: all interfaces)")
    port: int = Field(8000, ge=1, le=65535, description="TCP port `m2f-ttt serve` listens on")

    # model and adaptation
    model_path: Path = Field(
        default_factory=bundled_model_dir, description="checkpoint directory (config.json + model.safetensors)"
    )
    device: str = Field("auto", description="auto | cpu | cuda[:i]")
    ttt_method: str = Field("online", description="default TTT method of new streams")
    ttt_preset: str = Field("default", description="default TTT preset of new streams")
    seed: int = Field(0, description="seed of each stream's sampling / masking RNG")
    torch_threads: int | None = Field(
        None, ge=1, description="torch intra-op threads per worker lane (unset: cores / lanes on the CPU)"
    )
    worker_lanes: int | None = Field(
        None,
        ge=1,
        description="worker lanes: threads that run streams in parallel, each with its own model replica "
        "(unset: one per CPU core, at most 4; 1 on CUDA)",
    )
    cross_stream_batch: int | None = Field(
        None,
        ge=1,
        description="most streams of a lane whose frames go through one batched call (their predictions in one "
        "vmap, their TTT steps in one vmapped gradient; each stream's result is what it gets alone). Unset: 8 on "
        "CUDA, 1 (off) on the CPU, where a batched call is slower than the streams one by one",
    )

    decode_threads: int = Field(
        1,
        ge=0,
        description="threads that decode WebSocket images as soon as they are queued, so worker lanes find them "
        "decoded (0: each lane decodes its frames itself, lazily)",
    )

    # limits
    max_streams: int = Field(8, ge=1, description="live streams + running jobs that may hold adapted state at once")
    max_state_memory: ByteSize = Field(ByteSize(2 * 1024**3), description="budget for all streams' adapted state")
    queue_size: int = Field(
        2, ge=1, description="frames queued per stream before the drop / backpressure policy applies"
    )
    upload_max_bytes: ByteSize = Field(ByteSize(512 * 1024**2), description="largest accepted upload")
    max_duration_s: float = Field(
        300.0, gt=0, description="longest accepted uploaded video (container duration, and timestamps while decoding)"
    )
    upload_max_frames: int = Field(
        9000,
        ge=1,
        description="most frames in an uploaded video (the container's count at upload, and again while decoding: "
        "a stream that passes it fails the job)",
    )
    upload_max_pixels: int = Field(
        3840 * 2160,
        ge=1,
        description="largest frame of an uploaded video (width * height; checked at upload and while decoding)",
    )
    max_concurrent_jobs: int = Field(2, ge=1, description="upload jobs that run at once (the others stay queued)")
    max_jobs_per_key: int = Field(
        1, ge=1, description="upload jobs of one API key that run at once; keys take turns for the free slots"
    )
    max_queued_jobs_per_key: int = Field(
        16, ge=1, description="queued upload jobs one API key may have; more uploads are refused with 429"
    )
    job_checkpoint_s: float = Field(
        30.0,
        gt=0,
        description="seconds between a running job's checkpoints (results committed + adapter state saved); a crash "
        "loses at most this much work, a clean shutdown none",
    )
    max_frame_bytes: ByteSize = Field(ByteSize(8 * 1024**2), description="largest WebSocket frame message")
    max_frame_pixels: int = Field(4096 * 4096, ge=1, description="largest decoded WebSocket frame (width * height)")
    max_result_side: int = Field(
        640, ge=16, description="results are computed at the frame size capped to this long side"
    )
    instance_score_threshold: float = Field(
        DEFAULT_SCORE_THRESHOLD,
        ge=0,
        le=1,
        description="default minimum score of an instance / panoptic segment (streams, jobs: `score_threshold`); "
        "the bundled model's real objects score >= 0.35, its leftover top-k pairs < 0.03",
    )
    instance_min_area: int = Field(
        DEFAULT_MIN_AREA,
        ge=0,
        description="default minimum pixels of an instance / panoptic segment at the result size (`min_area`)",
    )
    job_max_width: int | None = Field(None, ge=16, description="scale uploaded videos down to this width before TTT")
    start_timeout_s: float = Field(10.0, gt=0, description="time a WebSocket client has to send its start message")
    ws_idle_timeout_s: float = Field(
        15.0, gt=0, description="a started WebSocket stream that sends nothing for this long is closed (1008)"
    )

    # auth
    api_keys: CommaList = Field(
        default_factory=list,
        description="accepted API keys; each key owns the streams, jobs and checkpoints it creates (other keys get "
        "404); empty (and no admin keys) = auth off",
    )
    admin_api_keys: CommaList = Field(
        default_factory=list, description="API keys that may see and act on every key's streams, jobs and checkpoints"
    )
    max_streams_per_key: int = Field(
        4, ge=1, description="live streams (WebSocket + camera) one API key may hold at once (auth on only)"
    )

    allowed_origins: CommaList = Field(
        default_factory=list,
        description="browser origins (scheme://host[:port]) besides the service's own that may open WebSockets "
        "and send POST / DELETE requests (`*`: any); requests without an Origin header (curl, scripts) always pass",
    )

    # storage
    jobs_dir: Path = Field(Path("runs/jobs"), description="uploaded videos and job results (survive restarts)")
    states_dir: Path = Field(Path("runs/stream-states"), description="stream checkpoints (torch.save of adapter state)")
    checkpoints_per_stream: int = Field(
        3, ge=1, description="checkpoints kept per stream; saving one more deletes the stream's oldest"
    )
    checkpoint_bytes_per_key: ByteSize = Field(
        ByteSize(1024**3),
        description="disk all of one API key's checkpoints may use; a save past it first deletes the key's oldest "
        "checkpoints of ended streams, and is refused if that is not enough",
    )
    checkpoint_retention_s: float = Field(
        3600.0, ge=0, description="checkpoints of a stream that ended are deleted this long after it ended (0: at once)"
    )

    # RTSP
    rtsp_allowed_schemes: CommaList = Field(
        default_factory=lambda: ["rtsp", "rtsps"], description="URL schemes accepted for cameras"
    )
    rtsp_allowed_hosts: CommaList | None = Field(
        None,
        description="camera hosts: names, *.suffix, IPs and CIDR networks. A camera's host must match an entry, and "
        "every address it resolves to must be public or itself listed (IP / CIDR): loopback, private, link-local, "
        "CGNAT, multicast, ... addresses need an entry. Unset with auth off: any host with public addresses only; "
        "unset with M2F_API_KEYS set: no camera at all (see docs/security.md)",
    )
    rtsp_max_failures: int | None = Field(
        5,
        ge=1,
        description="consecutive failed connection attempts (with backoff) before a camera ends `failed` and frees "
        "its slot; the stream stays listed until deleted",
    )
    rtsp_open_timeout_s: float = Field(5.0, gt=0, description="seconds to open a camera (and socket I/O timeout)")
    rtsp_stall_timeout_s: float = Field(5.0, gt=0, description="seconds without a frame before reconnecting")
    rtsp_backoff_max_s: float = Field(
        2.0,
        gt=0,
        description="cap of the random wait between reconnect attempts (full jitter from 0.5 s doubling): a camera "
        "that comes back is resumed within about this long plus its open time",
    )
    rtsp_unwatched: Unwatched = Field(
        "pause",
        description="what a camera stream does while no client subscribes to its results: `pause` (frames are read "
        "but not processed, the adapted weights wait), `record` (every result is processed and written to "
        "recordings_dir, watched or not) or `run` (processed, results dropped). A stream's own `unwatched` wins",
    )
    recordings_dir: Path = Field(Path("runs/recordings"), description="recorded camera results, a folder per stream")
    recording_segment_frames: int = Field(
        300, ge=1, le=1_000_000, description="frames per recording segment (a folder with results.jsonl + overlay.mp4)"
    )
    recording_bytes_per_stream: ByteSize = Field(
        ByteSize(512 * 1024**2),
        description="disk a stream's recording may use; past it the oldest complete segments are deleted",
    )

    # job webhooks (docs/security.md)
    job_webhook_url: str | None = Field(
        None, description="URL called (POST, JSON) when any job ends; a job's own `webhook_url` form field wins"
    )
    webhook_secret: str | None = Field(
        None, repr=False, description="HMAC-SHA256 key of the X-M2F-Signature header (unset: calls are unsigned)"
    )
    webhook_allowed_hosts: CommaList | None = Field(
        None,
        description="webhook hosts (names, *.suffix, IPs, CIDR); every address a host resolves to must be public "
        "or listed by IP / CIDR. Unset: any host with public addresses only",
    )
    webhook_timeout_s: float = Field(5.0, gt=0, description="seconds per webhook attempt (connect + response)")
    webhook_max_attempts: int = Field(5, ge=1, le=20, description="webhook attempts before giving up")
    webhook_backoff_s: float = Field(
        1.0, gt=0, description="wait before the 2nd webhook attempt; doubled before each next one (full jitter)"
    )

    # Ray backend (optional extra `ray`; docs/deployment-ray.md)
    backend: Literal["local", "ray"] = Field(
        "local", description="local: one process owns the device; ray: sticky per-stream device-worker actors"
    )
    ray_address: str | None = Field(None, description="Ray cluster to join (`auto`, `ray://host:10001`); unset: start one")
    ray_actors: int = Field(2, ge=1, description="device-worker actors (one per GPU in production)")
    ray_checkpoint_every: int = Field(
        30, ge=1, description="frames between a stream's failover checkpoints (adaptation lost at most on a crash)"
    )
    ray_checkpoint_dir: str | None = Field(
        None,
        description="where failover checkpoints are also written: a directory or an fsspec URL (`s3://bucket/m2f`); "
        "unset: kept in the front-end's memory only",
    )
    ray_actor_gpus: float | None = Field(
        None, ge=0, description="GPUs per device-worker actor; unset: 1 when the Ray cluster has GPUs, else 0"
    )
    ray_health_interval_s: float = Field(
        2.0, gt=0, description="seconds between the front-end's liveness checks of its actors (failover of idle streams)"
    )

    # logging
    log_level: str = Field("INFO", description="DEBUG | INFO | WARNING | ERROR")

    @field_validator(
        "allowed_origins", "api_keys", "admin_api_keys", "rtsp_allowed_schemes", "rtsp_allowed_hosts",
        "webhook_allowed_hosts", mode="before",
    )
    @classmethod
    def _comma_list(cls, value: object) -> object:
        return _split(value)

    @field_validator("port", mode="before")
    @classmethod
    def _port_number(cls, value: object) -> object:
        """`M2F_PORT=tcp://10.0.0.5:8000` is Kubernetes' link variable of a Service named `m2f`: say so."""
        if isinstance(value, str) and "://" in value:
            raise ValueError(f"M2F_PORT={value!r} is not a port number; Kubernetes sets such a value for a Service "
                             "named `m2f`: set M2F_PORT explicitly or `enableServiceLinks: false`")
        return value

    @model_validator(mode="after")
    def _cameras_denied_by_default_with_auth(self) -> Settings:
        """With API keys, an unset camera allowlist means no camera host (not any host)."""
        if self.rtsp_allowed_hosts is None and self.auth_enabled:
            self.rtsp_allowed_hosts = []
        return self

    def instance_filter(self, score_threshold: float | None = None, min_area: int | None = None) -> InstanceFilter:
        """A stream's / job's instance filter: the values it asked for, the service defaults for the others."""
        score = self.instance_score_threshold if score_threshold is None else score_threshold
        return InstanceFilter(score, self.instance_min_area if min_area is None else min_area)

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys or self.admin_api_keys)
