"""The groups of the service's settings (`server.settings.Settings`): one model per group, read from
`M2F_<GROUP>_<FIELD>` (e.g. `M2F_RTSP_RETRY_FOR_S` is `RtspSettings.retry_for_s`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import platformdirs
from pydantic import BaseModel, ByteSize, ConfigDict, Field, field_validator
from pydantic_settings import NoDecode

from model.checkpoint import bundled_model_dir

Policy = Literal["latest", "block"]
Unwatched = Literal["pause", "record", "run"]
CommaList = Annotated[list[str], NoDecode]


def _split(value: object) -> object:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


class Group(BaseModel):
    """A group of settings: `M2F_<GROUP>_<FIELD>`; unknown names are ignored, as for the whole service."""

    model_config = ConfigDict(extra="ignore")


APP_NAME = "mask2former-ttt"


def default_data_dir() -> Path:
    """The platform's user data directory of the service (`~/.local/share/mask2former-ttt` on Linux; XDG_DATA_HOME
    and the other platforms' conventions through platformdirs)."""
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


class DataSettings(Group):
    """Where the service keeps what it writes: upload jobs, camera recordings, stream checkpoints."""

    dir: Path = Field(
        default_factory=default_data_dir,
        description="the service's data: `jobs/`, `recordings/` and `stream-states/` (checkpoints) under it, each "
        "unless its own setting (M2F_JOBS_DIR, M2F_RECORDING_DIR, M2F_CHECKPOINT_DIR) says otherwise; `/data` in the "
        "Docker image",
    )


class ModelSettings(Group):
    """The served checkpoint and where it runs."""

    path: Path = Field(
        default_factory=bundled_model_dir,
        description="checkpoint directory (config.json + model.safetensors), or `hf:<repo-id>[@<revision>]`: a Hugging "
        "Face Mask2Former, downloaded (offline: taken from the Hugging Face cache) and converted once",
    )
    device: str = Field("auto", description="auto | cpu | cuda[:i]")

    @field_validator("path", mode="before")
    @classmethod
    def _resolve_hf(cls, value: object) -> object:
        """`hf:<repo-id>[@<revision>]` -> the directory of its cached conversion (model.hub)."""
        from model.hub import is_hf_spec, resolve_hf_model

        return resolve_hf_model(str(value)) if is_hf_spec(value) else value


class TTTSettings(Group):
    """What new streams and jobs adapt with unless they ask otherwise."""

    method: str = Field(
        "online", description="default TTT method of new streams; unset, a model whose g is untrained (a converted "
        "Mask2Former before `m2f-ttt prepare`) gets main_only"
    )
    preset: str = Field("default", description="default TTT preset of new streams")
    schedule: Literal["sync", "pipelined", "async"] | None = Field(
        None,
        description="when every stream's TTT steps run, instead of its preset's schedule: `sync` before each "
        "prediction, `pipelined` after each result is sent, `async` on the worker's background step executor "
        "(predictions never wait for a step; steps that fall behind are skipped and counted). Unset: the preset's",
    )


class WorkerSettings(Group):
    """The device worker's parallelism."""

    lanes: int | None = Field(
        None,
        ge=1,
        description="worker lanes: threads that run streams in parallel, each with its own model replica "
        "(unset: one per CPU core, at most 4; 1 on CUDA)",
    )
    torch_threads: int | None = Field(
        None, ge=1, description="torch intra-op threads per worker lane (unset: cores / lanes on the CPU)"
    )
    cross_stream_batch: int = Field(
        1,
        ge=1,
        description="most streams of a lane whose frames go through one batched call (their predictions in one "
        "vmap, their TTT steps in one vmapped gradient; each stream's result is what it gets alone). 1 = off, on "
        "every device: on the CPU a batched call is slower than the streams one by one, and no GPU has measured "
        "it faster yet (scripts/gpu_check.sh times it)",
    )


class StreamLimits(Group):
    """Live streams (WebSocket and camera) and the adapted state streams and jobs hold."""

    max: int = Field(8, ge=1, description="live streams + running jobs that may hold adapted state at once")
    max_per_key: int = Field(
        4, ge=1, description="live streams (WebSocket + camera) one API key may hold at once (auth on only)"
    )
    max_state_memory: ByteSize = Field(ByteSize(2 * 1024**3), description="budget for all streams' adapted state")
    max_frame_bytes: ByteSize = Field(ByteSize(8 * 1024**2), description="largest WebSocket frame message")
    max_frame_pixels: int = Field(4096 * 4096, ge=1, description="largest decoded WebSocket frame (width * height)")
    idle_timeout_s: float = Field(
        15.0, gt=0, description="a started WebSocket stream that sends nothing for this long is closed (1008)"
    )


class UploadLimits(Group):
    """What an uploaded video may be."""

    max_bytes: ByteSize = Field(ByteSize(512 * 1024**2), description="largest accepted upload")
    max_frames: int = Field(
        9000,
        ge=1,
        description="most frames in an uploaded video (the container's count at upload, and again while decoding: "
        "a stream that passes it fails the job); the bound on a job's work, whatever the video's frame rate",
    )
    max_pixels: int = Field(
        3840 * 2160,
        ge=1,
        description="largest frame of an uploaded video (width * height; checked at upload and while decoding)",
    )


class JobSettings(Group):
    """Upload jobs: where they live, how many run, how often they checkpoint."""

    dir: Path | None = Field(
        None, description="uploaded videos and job results (survive restarts); unset: `jobs/` in M2F_DATA_DIR"
    )
    max_concurrent: int = Field(2, ge=1, description="upload jobs that run at once (the others stay queued)")
    max_per_key: int = Field(
        1, ge=1, description="upload jobs of one API key that run at once; keys take turns for the free slots"
    )
    max_queued_per_key: int = Field(
        16, ge=1, description="queued upload jobs one API key may have; more uploads are refused with 429"
    )
    checkpoint_s: float = Field(
        30.0,
        gt=0,
        description="seconds between a running job's checkpoints (results committed + adapter state saved); a crash "
        "loses at most this much work, a clean shutdown none",
    )


class ApiSettings(Group):
    """Who may call the service."""

    keys: CommaList = Field(
        default_factory=list,
        description="accepted API keys; each key owns the streams, jobs and checkpoints it creates (other keys get "
        "404); empty (and no admin keys) = auth off",
    )
    admin_keys: CommaList = Field(
        default_factory=list, description="API keys that may see and act on every key's streams, jobs and checkpoints"
    )
    allowed_origins: CommaList = Field(
        default_factory=list,
        description="browser origins (scheme://host[:port]) besides the service's own that may open WebSockets "
        "and send POST / DELETE requests (`*`: any); requests without an Origin header (curl, scripts) always pass",
    )

    @field_validator("keys", "admin_keys", "allowed_origins", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        return _split(value)


class CheckpointSettings(Group):
    """Stream checkpoints (the adapted state a client saves and restores by id)."""

    dir: Path | None = Field(
        None, description="stream checkpoints (torch.save of adapter state); unset: `stream-states/` in M2F_DATA_DIR"
    )
    per_stream: int = Field(
        3, ge=1, description="checkpoints kept per stream; saving one more deletes the stream's oldest"
    )
    bytes_per_key: ByteSize = Field(
        ByteSize(1024**3),
        description="disk all of one API key's checkpoints may use; a save past it first deletes the key's oldest "
        "checkpoints of ended streams, and is refused if that is not enough",
    )
    retention_s: float = Field(
        3600.0, ge=0, description="checkpoints of a stream that ended are deleted this long after it ended (0: at once)"
    )


class RtspSettings(Group):
    """Camera streams (`rtsp://`, `rtsps://`)."""

    allowed_hosts: CommaList | None = Field(
        None,
        description="camera hosts: names, *.suffix, IPs and CIDR networks. A camera's host must match an entry, and "
        "every address it resolves to must be public or itself listed (IP / CIDR): loopback, private, link-local, "
        "CGNAT, multicast, ... addresses need an entry. Unset with auth off: any host with public addresses only; "
        "unset with M2F_API_KEYS set: no camera at all (see docs/security.md)",
    )
    retry_for_s: float = Field(
        3600.0,
        gt=0,
        description="seconds a camera that lost its connection keeps retrying (exponential backoff with jitter, "
        "capped at 60 s) before it ends `failed`; meanwhile it is `waiting`: its adapted state is saved and its "
        "stream slot freed, and it resumes with that state when the camera answers. The stream stays listed until "
        "deleted",
    )
    unwatched: Unwatched = Field(
        "pause",
        description="what a camera stream does while no client subscribes to its results: `pause` (frames are read "
        "but not processed, the adapted weights wait), `record` (every result is processed and written to "
        "M2F_RECORDING_DIR, watched or not) or `run` (processed, results dropped). A stream's own `unwatched` wins",
    )

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        return _split(value)


class RecordingSettings(Group):
    """Recorded camera results (`unwatched="record"`)."""

    dir: Path | None = Field(
        None, description="recorded camera results, a folder per stream; unset: `recordings/` in M2F_DATA_DIR"
    )
    bytes_per_stream: ByteSize = Field(
        ByteSize(512 * 1024**2),
        description="disk a stream's recording may use; past it the oldest complete segments are deleted",
    )


class WebhookSettings(Group):
    """Job webhooks (docs/security.md)."""

    url: str | None = Field(
        None, description="URL called (POST, JSON) when any job ends; a job's own `webhook_url` form field wins"
    )
    secret: str | None = Field(
        None, repr=False, description="HMAC-SHA256 key of the X-M2F-Signature header (unset: calls are unsigned)"
    )
    allowed_hosts: CommaList | None = Field(
        None,
        description="webhook hosts (names, *.suffix, IPs, CIDR); every address a host resolves to must be public "
        "or listed by IP / CIDR. Unset: any host with public addresses only",
    )

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        return _split(value)


class RaySettings(Group):
    """The Ray backend (optional extra `ray`; docs/deployment-ray.md)."""

    address: str | None = Field(None, description="Ray cluster to join (`auto`, `ray://host:10001`); unset: start one")
    actors: int = Field(2, ge=1, description="device-worker actors (one per GPU in production)")
    checkpoint_every: int = Field(
        30, ge=1, description="frames between a stream's failover checkpoints (adaptation lost at most on a crash)"
    )
    checkpoint_dir: str | None = Field(
        None,
        description="where failover checkpoints are also written: a directory or an fsspec URL (`s3://bucket/m2f`); "
        "unset: kept in the front-end's memory only",
    )
    actor_gpus: float | None = Field(
        None, ge=0, description="GPUs per device-worker actor; unset: 1 when the Ray cluster has GPUs, else 0"
    )

