"""Response models of the HTTP API (`response_model` of every JSON route; they are the OpenAPI schema)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from model.config import TASKS, Task
from model.postprocess import DEFAULT_MIN_AREA, DEFAULT_SCORE_THRESHOLD
from server.jobs.store import Job


class ErrorDetail(BaseModel):
    """The body of every refusal the routes raise themselves (4xx / 503): what went wrong, in words."""

    detail: str


ERROR_DESCRIPTIONS = {
    400: "bad request (the message says what)",
    401: "missing or invalid API key (auth on)",
    403: "cross-origin browser request refused (see M2F_API_ALLOWED_ORIGINS)",
    404: "no such resource",
    409: "the resource is not in a state that allows this",
    413: "upload too large",
    415: "not a video",
    422: "unusable input (the message says what)",
    429: "quota exceeded",
    500: "the model failed on the input (the message says how)",
    503: "the service is starting, or full",
}


def error_responses(*codes: int) -> dict[int | str, dict]:
    """OpenAPI `responses=` entries for refusals with an `ErrorDetail` body."""
    return {code: {"model": ErrorDetail, "description": ERROR_DESCRIPTIONS[code]} for code in codes}


# `POST /v1/jobs` parses its multipart body by hand (streamed to disk with a size cap), so FastAPI cannot infer it
UPLOAD_REQUEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary", "description": "the video (MP4, MKV, ...)"},
                        "task": {"type": "string", "enum": list(TASKS), "default": "semantic"},
                        "method": {"type": "string", "description": "TTT method (default: M2F_TTT_METHOD)"},
                        "preset": {"type": "string", "description": "TTT preset (default: M2F_TTT_PRESET)"},
                        "score_threshold": {
                            "type": "number", "minimum": 0, "maximum": 1,
                            "description": "drop instances / panoptic segments scoring less (default: "
                            f"{DEFAULT_SCORE_THRESHOLD:g})",
                        },
                        "min_area": {
                            "type": "integer", "minimum": 0,
                            "description": f"drop smaller instances / segments (pixels; default: {DEFAULT_MIN_AREA})",
                        },
                        "webhook_url": {
                            "type": "string",
                            "description": "http(s) URL called with a signed JSON POST when the job ends "
                            "(docs/security.md)",
                        },
                        "legend": {
                            "type": "string", "enum": ["auto", "always", "never"], "default": "auto",
                            "description": "overlay.mp4's class legend: auto (in the frame from 240 rows, else a "
                            "strip beside it, which widens the video) | always (a strip beside every frame) | never",
                        },
                        "labels": {
                            "type": "boolean", "default": True,
                            "description": "overlay.mp4 labels each instance 'class #id score'",
                        },
                        "encodings": {
                            "type": "string",
                            "description": "comma-separated encodings results.jsonl adds to each frame: `rle` (COCO "
                            "RLEs for every task), `polygons` (COCO polygons)",
                        },
                    },
                }
            }
        },
    }
}


class Health(BaseModel):
    status: str = "ok"


class Capacity(BaseModel):
    """Streams and per-stream state memory in use vs the limits; `available`: one more stream would likely fit."""

    streams: int = 0
    max_streams: int = 0
    reserved_bytes: int = 0
    max_state_memory: int = 0
    available: bool = False


class ModelRef(BaseModel):
    """The loaded model, by name only (`/readyz` is open: no filesystem paths)."""

    name: str


class RayCluster(BaseModel):
    """The Ray backend's actors: `alive` of `actors` answer; a failed-over actor is listed in `dead`."""

    backend: str = "ray"
    actors: int
    alive: int
    dead: list[int]


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, bool] = Field(description="model_loaded, worker_alive, capacity_left")
    capacity: Capacity
    model: ModelRef | None
    cluster: RayCluster | None = Field(None, description="the Ray backend's device-worker actors (null: local)")


class ModelInfo(BaseModel):
    name: str
    class_names: list[str]
    thing_class_ids: list[int]
    image_size: int
    bundled_demo: bool = Field(
        False, description="the service runs the bundled synthetic-street demo model (its masks mean little on real "
        "footage; docs/real-weights.md loads real checkpoints)"
    )
    recon_trained: bool | None = Field(
        None, description="g, the reconstruction decoder TTT steps go through, is trained (false: a converted model's "
        "new g, so the default method is main_only until `m2f-ttt prepare MODEL FOOTAGE -o OUT`; null: not recorded "
        "by the checkpoint)"
    )
    guard_calibrated: bool = Field(
        False, description="the safe-adaptation guard's references (input, feature and confidence statistics) are in "
        "the checkpoint (`m2f-ttt prepare` or `m2f-ttt calibrate`); without them the presets adapt unguarded"
    )


class Defaults(BaseModel):
    method: str
    preset: str
    queue_size: int
    score_threshold: float = Field(description="instances / panoptic segments scoring less are dropped")
    min_area: int = Field(description="instances / panoptic segments with fewer pixels are dropped")


class Limits(BaseModel):
    max_streams: int
    max_state_memory: int
    upload_max_bytes: int
    upload_max_frames: int
    max_frame_bytes: int
    max_result_side: int


class ServiceInfo(BaseModel):
    model: ModelInfo
    methods: list[str] = Field(description="TTT methods a stream can run")
    presets: list[str]
    defaults: Defaults
    limits: Limits
    capacity: Capacity


class Classes(BaseModel):
    model: str
    class_names: list[str]
    thing_class_ids: list[int]
    class_colors: list[list[int]] = Field(description="RGB per class id")
    instance_colors: list[list[int]] = Field(description="RGB per instance index (cycled)")


class JobOut(Job):
    """A job's state, progress and result files."""

    progress: float = Field(0.0, description="frames_done / frames_total")


class JobList(BaseModel):
    jobs: list[JobOut]


class RecordingStatus(BaseModel):
    frames: int = Field(description="results recorded since the stream started")
    segments_deleted: int = Field(description="oldest segments deleted to stay within recording_bytes_per_stream")


class RecordingSegment(BaseModel):
    name: str = Field(description="the segment's id: the index of its first frame, zero-padded")
    first_frame: int
    frames: int
    bytes: int
    complete: bool = Field(description="finished (downloadable); the segment being written is not")
    archive: str | None = Field(description="URL of the segment's ZIP (results.jsonl, overlay.mp4, PNGs)")


class Recording(BaseModel):
    stream_id: str
    segments: list[RecordingSegment]
    segments_deleted: int


class StreamStatus(BaseModel):
    """A camera stream: state, counters, last error (credentials never echoed), memory."""

    id: str
    url: str
    state: str = Field(description="connecting | running | reconnecting | failed | stopped")
    task: Task
    method: str
    preset: str
    policy: str
    max_fps: float | None
    frames: int
    processed: int
    drops: int
    skipped_by_max_fps: int
    errors: int
    reconnects: int
    last_error: str | None
    codec: str | None
    width: int | None
    height: int | None
    fps: float | None
    memory_bytes: int
    last_loss: float | None
    rollbacks: int
    session_open: bool
    subscribers: int
    created: float
    unwatched: str = Field(description="pause | record | run: what the stream does while nobody subscribes")
    paused: bool = Field(description="frames are being dropped now: `unwatched` is pause and nobody subscribes")
    paused_frames: int = Field(description="camera frames dropped while paused")
    recording: RecordingStatus | None = Field(description="with unwatched=record: frames recorded so far")


class StreamList(BaseModel):
    streams: list[StreamStatus]


class ControlDone(BaseModel):
    """Outcome of an in-order stream control; the other fields depend on the control (e.g. `checkpoint_id`)."""

    model_config = ConfigDict(extra="allow")

    stream_id: str
