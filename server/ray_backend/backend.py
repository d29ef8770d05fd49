"""Front-end side of the Ray backend: start or join Ray, create the device-worker actors and the stream registry,
route each stream's calls to its owning actor, checkpoint every `ray_checkpoint_every` frames, and fail a dead
actor's streams over to live actors from their last checkpoint.

Checkpoints are kept in this (front-end) process, and written to `checkpoint_dir` (`M2F_RAY_CHECKPOINT_DIR`: a
directory or an fsspec URL) when one is given. A failover
is reported on the stream's next result as `"migrated": {from_actor, to_actor, frames_lost, resumed_from_frame}`:
`frames_lost` frames of adaptation (processed since the last checkpoint) are gone, their results were sent.
"""

from __future__ import annotations

import functools
import logging
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from model.checkpoint import load_config
from model.config import ModelConfig
from server.events import FrameError
from server.logging_setup import kv
from server.ray_backend.checkpoint_storage import write_checkpoint
from server.ray_backend.actor import ActorFull, remote_actor_class
from server.ray_backend.registry import NoLiveActor, registry_actor
from server.settings import Settings
from server.worker.admission import CapacityError
from server.wire.outbound import frame_error_message, result_message
from server.worker.device_worker import AdapterFactory
from server.worker.stream_session import FrameItem

log = logging.getLogger(__name__)


class StreamLost(KeyError):
    """The stream is not (or no longer) open on this front-end."""


@dataclass
class _Stream:
    """What the front-end remembers of a stream to re-admit it elsewhere."""

    spec: dict[str, Any]
    actor: int
    frames: int = 0  # results returned
    checkpoint: bytes | None = None
    checkpoint_frames: int = 0
    migrated: dict[str, Any] | None = None  # reported on the next result


class RayBackend:
    """N `DeviceWorkerActor`s behind one routing object; thread-safe per stream (one caller per stream)."""

    def __init__(
        self,
        settings: Settings,
        *,
        num_cpus: int | None = None,
        actor_options: dict[str, Any] | None = None,
        torch_threads: int | None = None,
        adapter_factory: AdapterFactory | None = None,
        checkpoint_dir: Path | str | None = None,
        call_timeout_s: float = 120.0,
        on_moved: Callable[[str, dict[str, Any]], None] | None = None,
        on_lost: Callable[[str, str], None] | None = None,
    ) -> None:
        """`on_moved(stream_id, migrated)` is called for each stream a failover moved, on the thread that found the
        dead actor (the service front-end re-routes the stream's queue and tells its client); `on_lost(stream_id,
        reason)` for each it could not move (no live actor with room): the stream is gone."""
        import ray

        self.settings = settings
        self.on_moved, self.on_lost = on_moved, on_lost
        self.dead: set[int] = set()
        self.started_ray = not ray.is_initialized()
        self.checkpoint_every = settings.ray.checkpoint_every
        self.checkpoint_dir = checkpoint_dir if checkpoint_dir is not None else settings.ray.checkpoint_dir
        self.call_timeout_s = call_timeout_s
        if not ray.is_initialized():
            ray.init(address=settings.ray.address or None, num_cpus=num_cpus, include_dashboard=False)
        options = {"num_cpus": 1, "max_restarts": 0, **actor_gpus(settings)} if actor_options is None else actor_options
        cls = remote_actor_class()
        self.frontend_id = uuid.uuid4().hex[:8]  # names this front-end's actors in the Ray dashboard / `ray list`
        self.actors = [
            cls.options(name=f"m2f-ttt-worker-{self.frontend_id}-{i}", **options).remote(
                settings, torch_threads=torch_threads, adapter_factory=adapter_factory
            )
            for i in range(settings.ray.actors)
        ]
        self.registry = registry_actor(settings.ray.actors, self.frontend_id)
        self.streams: dict[str, _Stream] = {}
        self._lock = threading.Lock()  # failover: one re-admission of a dead actor's streams at a time
        ray.get([a.ping.remote() for a in self.actors], timeout=call_timeout_s)  # actors built, lanes running

    def _get(self, ref: Any) -> Any:
        import ray

        return ray.get(ref, timeout=self.call_timeout_s)

    # ---- streams --------------------------------------------------------------------------------------------
    def open_stream(self, spec: dict[str, Any]) -> str:
        """Place a new stream on the least-loaded live actor and admit it there; returns its id."""
        spec = {**spec, "stream_id": spec.get("stream_id") or f"ray-{uuid.uuid4().hex[:12]}"}
        stream_id = spec["stream_id"]
        try:
            index = self._admit(stream_id, spec)
        except Exception:
            self.registry.release.remote(stream_id)
            raise
        self.streams[stream_id] = _Stream(spec, index)
        return stream_id

    def _admit(self, stream_id: str, spec: dict[str, Any]) -> int:
        """Open the stream on the least-loaded live actor that has room: an actor refusing it for capacity (its
        streams or memory, which the registry's counts do not see) is skipped. CapacityError when none has room."""
        from ray.exceptions import RayActorError, RayTaskError

        full: list[int] = []
        while True:
            try:
                index = self._get(self.registry.place.remote(stream_id, full))
            except RayTaskError as exc:
                if isinstance(exc.cause, NoLiveActor) and full:
                    raise CapacityError("streams", f"no actor has room for a stream (full: {full})") from None
                raise
            try:
                self._get(self.actors[index].open_stream.remote(spec))
                return index
            except RayActorError:
                full.append(index)  # died before anyone noticed: the next call on one of its streams fails it over
            except RayTaskError as exc:
                if not isinstance(exc.cause, ActorFull):
                    raise
                full.append(index)

    def owner(self, stream_id: str) -> int:
        return self.streams[stream_id].actor

    def call(self, stream_id: str, method: str, *args: Any) -> Any:
        """`actor.<method>(stream_id, *args)` on the stream's owner; a dead owner's streams are re-admitted elsewhere
        first (`fail_over`) and the call is made there, so the caller sees no error."""
        from ray.exceptions import RayActorError

        while True:
            stream = self.streams.get(stream_id)
            if stream is None:
                raise StreamLost(f"stream {stream_id!r} is not open (closed, or lost with its actor)")
            index = stream.actor
            try:
                return self._get(getattr(self.actors[index], method).remote(stream_id, *args))
            except RayActorError:
                self.fail_over(index)

    def frame_done(self, stream_id: str) -> None:
        """Count a result of the stream; every `ray_checkpoint_every` results, take its failover checkpoint."""
        stream = self.streams[stream_id]
        stream.frames += 1
        if stream.frames % self.checkpoint_every == 0:
            self._checkpoint(stream_id, stream)

    def submit(self, stream_id: str, frame: bytes, frame_id: Any, capture_ts: float | None = None) -> dict:
        """The stream's result (or error) message for one encoded image: its owning actor returns the
        `FrameResult` / `FrameError` (`DeviceWorkerActor.process`), encoded here by `server.wire.outbound`, the
        service's one encoder; a failover since the last result is reported on it as `migrated`."""
        obj, _ = self.call(stream_id, "process", FrameItem(frame_id=frame_id, data=frame, capture_ts=capture_ts))
        if isinstance(obj, FrameError):
            msg = frame_error_message(obj)
        else:
            cfg = self.model_config
            msg = result_message(obj, obj.encodings, cfg.class_names, cfg.class_colors)
        self.frame_done(stream_id)
        stream = self.streams[stream_id]
        if stream.migrated is not None:
            msg["migrated"], stream.migrated = stream.migrated, None
        return msg

    @functools.cached_property
    def model_config(self) -> ModelConfig:
        """The served checkpoint's config (class names and colours of the encoded results)."""
        return load_config(self.settings.model.path)

    def checkpoint_now(self, stream_id: str) -> None:
        """Take the stream's failover checkpoint now (after a reset or restore changed its state)."""
        self._checkpoint(stream_id, self.streams[stream_id])

    def _checkpoint(self, stream_id: str, stream: _Stream) -> None:
        from ray.exceptions import RayActorError

        try:
            data = self._get(self.actors[stream.actor].checkpoint.remote(stream_id))
        except RayActorError:
            return  # the owner died after the frame: the next call fails over from the previous checkpoint
        stream.checkpoint, stream.checkpoint_frames = data, stream.frames
        if self.checkpoint_dir is not None:
            try:
                write_checkpoint(self.checkpoint_dir, stream_id, data)
            except Exception:  # noqa: BLE001 - the copy in memory still serves a failover
                log.exception("writing a failover checkpoint failed", extra=kv(stream=stream_id))

    def close_stream(self, stream_id: str) -> None:
        from ray.exceptions import RayActorError

        stream = self.streams.pop(stream_id, None)
        if stream is None:
            return
        try:
            self._get(self.actors[stream.actor].close_stream.remote(stream_id))
        except RayActorError:
            pass  # its actor is gone, and the stream with it
        self._get(self.registry.release.remote(stream_id))

    # ---- failover -------------------------------------------------------------------------------------------
    def fail_over(self, index: int) -> list[str]:
        """Actor `index` died: re-admit each of its streams on a live actor from its last checkpoint (or afresh
        when it had none); returns the moved streams. Idempotent: a second call for the same actor does nothing."""
        with self._lock:
            self.dead.add(index)
            moved = self._get(self.registry.mark_dead.remote(index))
            for stream_id in moved:
                stream = self.streams.get(stream_id)
                if stream is None or stream.actor != index:
                    continue
                try:
                    target = self._admit(stream_id, stream.spec)
                    if stream.checkpoint is not None:
                        self._get(self.actors[target].restore.remote(stream_id, stream.checkpoint, stream.frames))
                except Exception as exc:  # noqa: BLE001 - no room, or another death: this stream ends, the rest move
                    self._lose(stream_id, f"its device-worker actor {index} died and no live actor could take it: {exc}")
                    continue
                stream.migrated = {
                    "from_actor": index,
                    "to_actor": target,
                    "frames_lost": stream.frames - stream.checkpoint_frames,
                    "resumed_from_frame": stream.checkpoint_frames,
                }
                stream.actor = target
                log.warning("stream failed over", extra=kv(stream=stream_id, **stream.migrated))
                if self.on_moved is not None:
                    self.on_moved(stream_id, stream.migrated)
            return moved

    def _lose(self, stream_id: str, reason: str) -> None:
        self.streams.pop(stream_id, None)
        self.registry.release.remote(stream_id)
        log.error("stream lost in failover", extra=kv(stream=stream_id, reason=reason))
        if self.on_lost is not None:
            self.on_lost(stream_id, reason)

    # ---- cluster --------------------------------------------------------------------------------------------
    @property
    def live_actors(self) -> list[int]:
        """Indexes of the actors not known to be dead."""
        return [i for i in range(len(self.actors)) if i not in self.dead]

    def stats(self) -> list[dict[str, Any] | None]:
        """Each actor's `stats()` (None for a dead one)."""
        from ray.exceptions import RayActorError

        out: list[dict[str, Any] | None] = []
        for actor in self.actors:
            try:
                out.append(self._get(actor.stats.remote()))
            except RayActorError:
                out.append(None)
        return out

    def shutdown(self) -> None:
        """Kill the actors and the registry (Ray itself is left running: the caller may share it)."""
        import ray

        for actor in [*self.actors, self.registry]:
            ray.kill(actor)
        self.streams.clear()
        if self.started_ray:
            ray.shutdown()


def actor_gpus(settings: Settings) -> dict[str, float]:
    """`{"num_gpus": n}` for each device-worker actor: `ray_actor_gpus`, or when unset 1 if the cluster has GPUs
    (one actor per device) and none otherwise."""
    import ray

    gpus = settings.ray.actor_gpus
    if gpus is None:
        gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    return {"num_gpus": gpus} if gpus else {}
