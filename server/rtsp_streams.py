"""RTSP camera streams: a source thread per camera feeding a worker session, results fanned out to subscribers.

Life of a camera stream: `create` checks the URL against the allowlist, admits a session (capacity), starts an
`RtspSource`; the source's frames go into the session's queue under its policy; a pump task encodes each result
once and hands it to every subscriber's bounded queue (a slow subscriber loses its oldest messages, never blocks
the others). While nobody subscribes, the stream's `unwatched` mode decides: `pause` drops the camera's frames
before the worker (the connection stays open, the adapted weights wait), `record` processes every frame and
writes each result to the stream's `StreamRecorder` (watched or not), `run` processes them and drops the
results. While the camera is away the stream is `waiting` without its session (`server.camera_waiting`); after
`M2F_RTSP_RETRY_FOR_S` without a frame it stays visible as `failed` until deleted.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from model.postprocess import InstanceFilter
from server.auth import Principal
from server.camera_errors import camera_error
from server.camera_source import default_source_factory, default_url_check, redact
from server.camera_waiting import WAITING_REASON, CameraWaits, Sleep, announce
from server.logging_setup import kv
from server.metrics import Metrics
from server.recording import StreamRecorder
from server.settings import Settings
from server.streaming import LoopForwarder
from server.wire.outbound import outgoing_message
from server.events import FrameResult, SessionClosed
from server.worker import DeviceWorker, FrameItem, StreamSession
from server.worker.stream_session import QUEUE_SIZE

log = logging.getLogger(__name__)

SUBSCRIBER_QUEUE = 32
CAMERA_OPEN_TIMEOUT_S = 5.0  # seconds to open a camera (connect, RTSP handshake, probe); also its socket I/O timeout
CAMERA_STALL_TIMEOUT_S = 5.0  # seconds without a decoded frame before the camera is reconnected
CAMERA_BACKOFF_MAX_S = 60.0  # cap of the random wait between reconnect attempts (full jitter from 0.5 s, doubling)
RECORDING_SEGMENT_FRAMES = 300  # frames per recording segment (a folder with results.jsonl + overlay.mp4)
CLOSED = object()  # sentinel for subscriber queues
SourceFactory = Callable[..., Any]

@dataclass
class RtspStream:
    """One camera: its worker session (None once released), source, subscribers and settings."""

    id: str
    url: str
    task: str
    method: str
    preset: str
    policy: str
    max_fps: float | None
    session: StreamSession
    fwd: LoopForwarder
    source: Any = None
    subscribers: set[asyncio.Queue] = field(default_factory=set)
    pump: asyncio.Task | None = None
    created: float = field(default_factory=time.time)
    released: bool = False
    reconnects_seen: int = 0
    owner: str = ""  # id of the API key that created the stream; "" with auth off
    unwatched: str = "pause"  # pause | record | run: what happens while `subscribers` is empty
    recorder: StreamRecorder | None = None  # with unwatched == "record"
    paused_frames: int = 0  # camera frames dropped because nobody subscribed (unwatched == "pause")
    waiting: bool = False  # the session is released while the camera is away (server.camera_waiting)
    wait_reason: str | None = None  # why a reachable camera still waits (the service is full)
    checkpoint_id: str | None = None  # the adapted state saved while waiting
    new_session: Callable[[], StreamSession] | None = None  # same id and settings
    settling: asyncio.Lock = field(default_factory=asyncio.Lock)
    announced: str = ""  # the last state told to subscribers

    @property
    def paused(self) -> bool:
        """True while frames are being dropped for want of a subscriber (read from the source thread too)."""
        return self.unwatched == "pause" and not self.subscribers

    @property
    def state(self) -> str:
        """connecting | running | waiting (away, or back while full) | failed | stopped."""
        state = getattr(self.source, "state", None)
        value = getattr(state, "value", str(state)) if state is not None else "connecting"
        if value in ("failed", "stopped"):
            return value
        return "waiting" if self.waiting or value == "reconnecting" else value

    def publish(self, msg: Any) -> None:
        """Put `msg` on every subscriber queue, dropping a subscriber's oldest message when it is full."""
        for q in list(self.subscribers):
            if q.full():
                try:
                    q.get_nowait()
                except asyncio.QueueEmpty:
                    pass
            q.put_nowait(msg)


class RtspManager:
    """Registry of camera streams."""

    def __init__(
        self,
        worker: DeviceWorker,
        settings: Settings,
        metrics: Metrics,
        class_names: list[str],
        source_factory: SourceFactory = default_source_factory,
        thing_class_ids: list[int] | None = None,
        url_check: Callable[[str, list[str] | None], None] = default_url_check,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.worker = worker
        self.settings = settings
        self.metrics = metrics
        self.class_names = class_names
        self.thing_class_ids = list(thing_class_ids or [])
        self.source_factory = source_factory
        self.url_check = url_check
        self.streams: dict[str, RtspStream] = {}
        self.waits = CameraWaits(worker, sleep)
        self.loop: asyncio.AbstractEventLoop | None = None  # set by the first `create`

    async def create(
        self,
        url: str,
        task: str,
        method: str,
        preset: str,
        policy: str,
        max_fps: float | None,
        encodings: tuple[str, ...],
        owner: str = "",
        instance_filter: InstanceFilter | None = None,
        unwatched: str | None = None,
    ) -> RtspStream:
        """Start a camera stream owned by `owner` (an API key id). ValueError: URL not allowed / bad method;
        CapacityError: service full (QuotaError: the owner's streams are at their limit)."""
        s = self.settings
        self.url_check(url, s.rtsp.allowed_hosts)
        self.loop = asyncio.get_running_loop()
        fwd = LoopForwarder(self.loop)
        instance_filter = instance_filter or s.instance_filter()

        def make_session(session_id: str | None = None) -> StreamSession:
            return StreamSession("rtsp", task, method, preset, policy, QUEUE_SIZE, fwd, encodings,
                                 session_id=session_id, owner=owner, instance_filter=instance_filter)

        session = make_session()
        await asyncio.wrap_future(self.worker.open_session(session))
        stream = RtspStream(uuid.uuid4().hex[:12], url, task, method, preset, policy, max_fps, session, fwd)
        stream.new_session = lambda: make_session(session.id)
        stream.owner = owner
        stream.unwatched = unwatched or s.rtsp.unwatched
        if stream.unwatched == "record":
            stream.recorder = StreamRecorder(
                Path(s.recording.dir) / stream.id, task, self.class_names, self.thing_class_ids,
                segment_frames=RECORDING_SEGMENT_FRAMES, max_bytes=int(s.recording.bytes_per_stream),
                fps=max_fps or 25.0, class_colors=self.worker.model.cfg.class_colors,
            )
        stream.pump = asyncio.create_task(self._pump(stream))
        try:
            stream.source = self.source_factory(
                url=url,
                on_frame=lambda frame, pts, index: self._on_frame(stream, frame, pts, index),
                max_fps=max_fps,
                open_timeout_s=CAMERA_OPEN_TIMEOUT_S,
                stall_timeout_s=CAMERA_STALL_TIMEOUT_S,
                backoff_max_s=CAMERA_BACKOFF_MAX_S,
                max_outage_s=s.rtsp.retry_for_s,
                allowed_hosts=s.rtsp.allowed_hosts,
                on_state=lambda state: self._on_state(stream, state),
            )
            stream.source.start()
        except Exception:
            self.worker.close_session(session, "camera source could not start")
            stream.pump.cancel()
            raise
        self.streams[stream.id] = stream
        log.info("rtsp stream created", extra=kv(stream=stream.id, session=session.id, url=redact(url), task=task))
        return stream

    def _on_frame(self, stream: RtspStream, frame: np.ndarray, pts: float, index: int) -> None:
        """Source thread: queue the frame (policy `block` waits here, slowing the camera reader); while paused
        (nobody subscribed, `unwatched="pause"`) the frame is dropped and counted; while waiting it is dropped."""
        if stream.waiting or stream.released:
            return
        if stream.paused:
            stream.paused_frames += 1
            return
        item = FrameItem(frame_id=index, data=frame, pts_s=pts)
        if stream.policy == "block":
            self.worker.put(stream.session, item)
        else:
            self.worker.offer(stream.session, item)

    def _on_state(self, stream: RtspStream, state: Any) -> None:
        """Source thread: count reconnects, tell subscribers, release a failed camera, suspend / resume a stream."""
        self._sync_reconnects(stream)
        value = getattr(state, "value", str(state))
        stats = getattr(stream.source, "stats", None)
        log.info("rtsp state", extra=kv(stream=stream.id, state=value, last_error=getattr(stats, "last_error", None)))
        announce(stream)
        if value == "failed" and not stream.released:
            stream.released = True
            self.worker.close_session(stream.session, f"camera failed: {camera_error(stats, None)}")
            self.waits.end(stream)
        elif self.loop is not None and value in ("running", "reconnecting"):  # suspend or resume
            asyncio.run_coroutine_threadsafe(self.waits.settle(stream, lambda: announce(stream)), self.loop)

    def _sync_reconnects(self, stream: RtspStream) -> None:
        stats = getattr(stream.source, "stats", None)
        n = int(getattr(stats, "reconnects", 0) or 0)
        if n > stream.reconnects_seen:
            self.metrics.reconnects.inc(n - stream.reconnects_seen)
            stream.reconnects_seen = n

    async def _pump(self, stream: RtspStream) -> None:
        """Record each delivery (`unwatched="record"`), encode it once (only while someone listens), publish it."""
        while True:
            obj = await stream.fwd.queue.get()
            if obj is CLOSED:
                return
            if stream.recorder is not None and isinstance(obj, (FrameResult, SessionClosed)):
                await stream.recorder.take(obj)
            if isinstance(obj, SessionClosed):
                if obj.reason == WAITING_REASON:  # the stream waits for its camera; it goes on
                    continue
                stream.publish({"type": "session_closed", "stream_id": stream.id, "reason": obj.reason})
                continue
            if not stream.subscribers:
                continue
            try:
                msg = await outgoing_message(obj, self.class_names, self.metrics, self.worker.model.cfg.class_colors)
            except Exception:  # noqa: BLE001
                log.exception("rtsp result encoding failed", extra=kv(stream=stream.id))
                continue
            if msg is not None:
                stream.publish(msg)

    def find(self, stream_id: str, principal: Any) -> RtspStream | None:
        """The stream if it exists and `principal` (server.auth.Principal) may see it; None otherwise."""
        stream = self.streams.get(stream_id)
        return stream if stream is not None and principal.owns(stream.owner) else None

    def visible(self, principal: Any) -> list[RtspStream]:
        """The streams `principal` may see (its own; an admin: all)."""
        return [s for s in self.streams.values() if principal.owns(s.owner)]

    def status(self, stream: RtspStream, principal: Principal | None = None) -> dict:
        """What `GET /v1/streams/{id}` returns to `principal`: `last_error` is the diagnosis for admins (and for
        everyone without API keys), the generic text otherwise (`server.camera_errors`)."""
        self._sync_reconnects(stream)
        stats = getattr(stream.source, "stats", None)
        st = stats.as_dict() if hasattr(stats, "as_dict") else {}
        sess = stream.session
        return {
            "id": stream.id,
            "url": redact(stream.url),
            "state": stream.state,
            "task": stream.task,
            "method": stream.method,
            "preset": stream.preset,
            "policy": stream.policy,
            "max_fps": stream.max_fps,
            "frames": st.get("frames", 0),
            "processed": sess.processed,
            "drops": sess.dropped,
            "skipped_by_max_fps": st.get("frames_dropped", 0),
            "errors": sess.errors,
            "reconnects": st.get("reconnects", 0),
            "last_error": stream.wait_reason or camera_error(stats, principal),
            "codec": st.get("codec"),
            "width": st.get("width"),
            "height": st.get("height"),
            "fps": st.get("fps"),
            "memory_bytes": 0 if sess.closed else sess.memory_bytes,
            "last_loss": sess.last_loss,
            "rollbacks": sess.rollbacks,
            "session_open": not sess.closed,
            "subscribers": len(stream.subscribers),
            "created": stream.created,
            "unwatched": stream.unwatched,
            "paused": stream.paused,
            "paused_frames": stream.paused_frames,
            "recording": None if stream.recorder is None else stream.recorder.status(),
        }

    async def delete(self, stream_id: str) -> bool:
        """Stop and forget a stream from any state; False if unknown."""
        stream = self.streams.pop(stream_id, None)
        if stream is None:
            return False
        self.worker.close_session(stream.session, "deleted")  # first: unblocks a source waiting in `put`
        if not stream.released:
            stream.released = True  # ends a resume in progress
            self.waits.end(stream)
        if stream.source is not None:
            await asyncio.to_thread(stream.source.stop, 5.0)
        stream.fwd(CLOSED)
        stream.publish(CLOSED)
        if stream.pump is not None:
            try:
                await asyncio.wait_for(stream.pump, 5.0)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                stream.pump.cancel()
        if stream.recorder is not None:
            await asyncio.to_thread(stream.recorder.delete_all)
        log.info("rtsp stream deleted", extra=kv(stream=stream_id))
        return True

    async def shutdown(self) -> None:
        for stream_id in list(self.streams):
            await self.delete(stream_id)
