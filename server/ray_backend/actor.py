"""The device-worker actor: one per device, running the same `DeviceWorker` as the single-process service.

A plain class (so it is importable and testable without Ray); `remote_actor_class()` wraps it with `ray.remote`.
Frames go the service's path: `DeviceWorker.put` -> the lane's `step_frame` -> `FrameResult`, returned as it is (it
pickles): the front-end encodes it for the wire (`server.wire.outbound`), as for the local backend.
Checkpoints are the stream state file format as bytes (`server.ray_backend.state_bytes`), taken and restored as
in-order controls on the stream's lane, like the service's checkpoint / restore.
"""

from __future__ import annotations

import os
import queue
import resource
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from model.checkpoint import load_checkpoint
from model.device import resolve_device
from server.metrics import Metrics
from server.ray_backend.state_bytes import load_state_bytes, state_bytes
from server.settings import Settings
from server.wire.inbound import encodings_for
from server.worker.admission import CapacityError
from server.worker.device_worker import AdapterFactory, DeviceWorker, default_adapter_factory
from server.events import FrameError, FrameResult, SessionClosed
from server.worker.stream_session import QUEUE_SIZE, FrameItem, StreamSession


def session_view(session: StreamSession) -> dict[str, Any]:
    """The session fields a front-end mirrors after each frame or control (counters, task, encodings)."""
    return {
        "task": session.task,
        "encodings": session.encodings,
        "processed": session.processed,
        "rollbacks": session.rollbacks,
        "last_loss": session.last_loss,
        "memory_bytes": session.memory_bytes,
        "reserved_bytes": session.reserved_bytes,
    }


class StreamNotFound(KeyError):
    """The actor does not own this stream (never opened, closed, or the actor was restarted)."""


class ActorFull(RuntimeError):
    """The actor refused a stream for capacity (`reason`: streams | memory): `CapacityError` made picklable, so it
    crosses the process boundary as itself (Ray cannot rebuild `CapacityError(reason, message)`)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason

    def __reduce__(self) -> tuple:
        return (type(self), (self.reason, str(self)))


class DeviceWorkerActor:
    """Owner of one device: a `DeviceWorker` (one lane) and the streams the front-end placed here."""

    def __init__(
        self,
        settings: Settings,
        *,
        torch_threads: int | None = None,
        adapter_factory: AdapterFactory | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        self.settings = settings
        self.timeout_s = timeout_s
        device = resolve_device(settings.model.device)
        self.model = load_checkpoint(settings.model.path, device)
        states_dir = Path(tempfile.mkdtemp(prefix=f"m2f-ray-actor-{os.getpid()}-"))  # service-style files: unused
        self.worker = DeviceWorker(
            self.model,
            Metrics(),
            max_streams=settings.streams.max,
            max_state_memory=int(settings.streams.max_state_memory),
            states_dir=states_dir,
            max_frame_pixels=settings.streams.max_frame_pixels,
            torch_threads=torch_threads or settings.worker.torch_threads,
            lanes=1,
            decode_threads=0,
            adapter_factory=adapter_factory or default_adapter_factory,
        )
        self.worker.start()
        self.streams: dict[str, tuple[StreamSession, queue.Queue]] = {}
        self.frames = 0

    # ---- streams --------------------------------------------------------------------------------------------
    def open_stream(self, spec: dict[str, Any]) -> str:
        """Admit a stream. `spec`: `stream_id` (required: the front-end names streams), `task`, and optionally
        `method`, `preset`, `encodings`, `owner`, `source`, `score_threshold`, `min_area`, `ttt_view_every`.
        ActorFull when it does not fit, ValueError for a bad method."""
        out: queue.Queue = queue.Queue()
        task = spec.get("task", "semantic")
        session = StreamSession(
            source=spec.get("source", "ws"),
            task=task,
            method=spec.get("method") or self.settings.ttt.method,
            preset=spec.get("preset") or self.settings.ttt.preset,
            policy="block",
            queue_size=QUEUE_SIZE,
            deliver=out.put,
            encodings=encodings_for(task, spec.get("encodings")),
            session_id=spec["stream_id"],
            owner=spec.get("owner", ""),
            instance_filter=self.settings.instance_filter(spec.get("score_threshold"), spec.get("min_area")),
            ttt_view_every=int(spec.get("ttt_view_every", 0)),
        )
        try:
            self.worker.open_session(session).result(self.timeout_s)
        except CapacityError as exc:
            raise ActorFull(exc.reason, str(exc)) from None
        self.streams[session.id] = (session, out)
        return session.id

    def _stream(self, stream_id: str) -> tuple[StreamSession, queue.Queue]:
        try:
            return self.streams[stream_id]
        except KeyError:
            raise StreamNotFound(f"stream {stream_id!r} is not on this actor") from None

    def process(self, stream_id: str, item: FrameItem) -> tuple[FrameResult | FrameError, dict]:
        """Run one frame (encoded bytes or an (H, W, 3) uint8 array) through the stream's lane, as the
        single-process worker does; returns what that worker would deliver (`FrameResult` / `FrameError`) and the
        session's counters (`session_view`), for the service front-end to deliver and mirror. A frame sent as an
        array comes back with `image=None` (the caller has it: a full frame is not moved twice)."""
        session, out = self._stream(stream_id)
        item.decoding, item.enqueued = None, 0.0
        if not self.worker.put(session, item, self.timeout_s):
            raise RuntimeError(f"stream {stream_id!r} is closed or its queue stayed full")
        deadline = time.monotonic() + self.timeout_s
        while True:
            obj = out.get(timeout=max(0.0, deadline - time.monotonic()))
            if isinstance(obj, (FrameResult, FrameError)) and obj.frame_id == item.frame_id:
                if isinstance(obj, FrameResult):
                    self.frames += 1
                    if not isinstance(item.data, bytes):  # the caller sent this very array: not sent back
                        obj.image = None  # type: ignore[assignment] - the front-end puts its own copy back
                return obj, session_view(session)
            if isinstance(obj, SessionClosed):
                raise RuntimeError(f"stream {stream_id!r} closed: {obj.reason}")
            # ControlReply of an earlier control (answered on its Future already): skip

    def run_control(self, stream_id: str, name: str, fn: Callable[[StreamSession], dict]) -> tuple[dict, dict]:
        """Run `fn(session)` as an in-order control on the stream's lane (the service's reset, set_task, job state
        saves...; `fn` travels pickled, so what it touches on disk must be storage the actor shares). Returns its
        payload and `session_view`; its exception is raised."""
        session, _ = self._stream(stream_id)
        payload = self.worker.control(session, name, fn).result(self.timeout_s)
        return payload, session_view(session)

    def close_stream(self, stream_id: str) -> None:
        """Release the stream's adapter (no-op for an unknown stream)."""
        entry = self.streams.pop(stream_id, None)
        if entry is not None:
            self.worker.close_session(entry[0], "closed").result(self.timeout_s)

    def checkpoint(self, stream_id: str) -> bytes:
        """The stream's adapted state as bytes, taken in order after the frames submitted before."""
        session, _ = self._stream(stream_id)
        fut = self.worker.control(session, "checkpoint", lambda s: {"data": state_bytes(s), "frames": s.processed})
        return fut.result(self.timeout_s)["data"]

    def restore(self, stream_id: str, data: bytes, processed: int | None = None) -> dict:
        """Load bytes from `checkpoint` into the stream; `processed` sets its frame counter (so frame indices go
        on from where the stream was, not from where its state was saved). Returns `{frames}` of the state."""
        session, _ = self._stream(stream_id)

        def run(s: StreamSession) -> dict:
            loaded = load_state_bytes(s, data)
            s.processed = loaded["frames"] if processed is None else processed
            return loaded

        return self.worker.control(session, "restore", run).result(self.timeout_s)

    def stats(self) -> dict:
        """`{pid, streams, frames, stream_ids, capacity, max_rss_bytes}` of this actor."""
        return {
            "pid": os.getpid(),
            "streams": len(self.streams),
            "frames": self.frames,
            "stream_ids": sorted(self.streams),
            "capacity": self.worker.capacity(),
            "max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        }

    def ping(self) -> bool:
        """True when the device worker's lane is running (readiness)."""
        return self.worker.alive


def remote_actor_class() -> Any:
    """`ray.remote(DeviceWorkerActor)`; resources (`num_gpus=1`, `num_cpus`) are given with `.options(...)`."""
    import ray

    return ray.remote(DeviceWorkerActor)


__all__ = ["ActorFull", "DeviceWorkerActor", "StreamNotFound", "remote_actor_class", "session_view"]
