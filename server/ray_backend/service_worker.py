"""The Ray backend behind the service: `RayDeviceWorker` stands where `DeviceWorker` does, so the WebSocket router,
the RTSP manager and the job runner are unchanged, and forwards each stream's frames and controls to the
device-worker actor that owns it (`RayBackend`: placement, failover checkpoints, failover).

The front-end keeps each stream's queue (the same `Scheduler`: `latest` / `block` policies, fair rounds) and runs one
dispatch thread per actor (its "lane"): a stream's frames and controls go to its owner one at a time and in order,
and every stream on a live actor moves while the others wait on theirs. The actor runs the single-process worker's
own lane (`DeviceWorker`, `step_frame`) and returns the `FrameResult` it would have delivered; the consumers encode
it here as for the local backend. Controls are `fn(session)` callables run on the owner (pickled: what they touch on
disk must be storage the actor shares); the service checkpoints / restores by id are saved and checked here, in the
front-end's state store. When an actor dies (a call on it fails, or the health thread finds it gone) its streams
are re-admitted on live actors from their last failover checkpoint, and each client gets
`{"type": "migrated", "from_actor", "to_actor", "frames_lost", "resumed_from_frame"}` before its next result.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

from model.ymodel import YModel
from server.logging_setup import kv
from server.metrics import Metrics
from server.ray_backend.backend import RayBackend
from server.ray_backend.remote_controls import RemoteControls, cause, mirror
from server.settings import Settings
from server.worker.admission import Admission, CapacityError
from server.worker.device_worker import AdapterFactory
from server.worker.scheduler import Scheduler, serve_lane
from server.worker.state_store import StreamStateStore
from server.events import FrameError, SessionClosed
from server.worker.stream_session import FrameItem, StreamSession

log = logging.getLogger(__name__)
HEALTH_INTERVAL_S = 2.0  # seconds between the front-end's liveness checks of its actors (failover of idle streams)


class RayDeviceWorker:
    """The service's device worker, backed by `settings.ray.actors` device-worker actors (see the module doc)."""

    def __init__(
        self,
        model: YModel,
        metrics: Metrics,
        settings: Settings,
        *,
        states: StreamStateStore,
        adapter_factory: AdapterFactory | None = None,
        actor_options: dict[str, Any] | None = None,
    ) -> None:
        self.model = model  # the front-end's copy, on the CPU: class names, colours, thing ids
        self.metrics = metrics
        self.settings = settings
        self.states = states
        self.sessions: dict[str, StreamSession] = {}
        self.scheduler = Scheduler(on_drop=lambda s: metrics.drops.labels(s.source).inc())
        self.admission = Admission(metrics, settings.streams.max, int(settings.streams.max_state_memory),
                                   settings.streams.max_per_key if settings.auth_enabled else None)
        self.backend = RayBackend(settings, torch_threads=settings.worker.torch_threads, adapter_factory=adapter_factory,
                                  actor_options=actor_options, on_moved=self._moved, on_lost=self._lost)
        self.controls = RemoteControls(self.scheduler, states, self.backend)
        self.actor_stats: list[dict | None] = [None] * len(self.backend.actors)
        self._registry = threading.Lock()
        self._opener = ThreadPoolExecutor(2, thread_name_prefix="ray-admit")
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()

    # ---- lifecycle ----------------------------------------------------------------------------------------
    @property
    def lanes(self) -> int:
        return len(self.backend.actors)

    def start(self) -> None:
        self._threads = [
            threading.Thread(target=self._run, args=(lane,), name=f"ray-dispatch-{lane}", daemon=True)
            for lane in range(self.lanes)
        ]
        self._threads.append(threading.Thread(target=self._watch, name="ray-health", daemon=True))
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop dispatching; every open session gets `SessionClosed("server shutting down")`; the actors go."""
        self._stop.set()
        for _, fut in self.scheduler.stop():
            if not fut.done():
                fut.set_exception(RuntimeError("the device worker stopped"))
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._opener.shutdown(wait=False, cancel_futures=True)
        for session in list(self.sessions.values()):
            self._forget(session, "server shutting down")
        self.backend.shutdown()

    @property
    def alive(self) -> bool:
        """Dispatch threads running and at least one actor alive."""
        threads = bool(self._threads) and all(t.is_alive() for t in self._threads)
        return threads and not self._stop.is_set() and bool(self.backend.live_actors)

    def cluster(self) -> dict[str, Any]:
        """`/readyz`'s view of the cluster: `{backend, actors, alive, dead}`. A cluster with one live actor still
        serves (ready); with none, `alive` (worker_alive) is false."""
        live = self.backend.live_actors
        dead = sorted(set(range(len(self.backend.actors))) - set(live))
        return {"backend": "ray", "actors": len(self.backend.actors), "alive": len(live), "dead": dead}

    def capacity(self) -> dict:
        """Streams and memory over the live actors (memory and room as their last health poll saw them)."""
        live = self.backend.live_actors
        with self._registry:
            sessions = list(self.sessions.values())
        polled = [self.actor_stats[i]["capacity"] for i in live if self.actor_stats[i]]
        return {
            "streams": len(sessions),
            "max_streams": self.settings.streams.max * len(live),
            "reserved_bytes": sum(s.reserved_bytes for s in sessions),
            "max_state_memory": int(self.settings.streams.max_state_memory) * len(live),
            "available": any(c["available"] for c in polled) if polled else bool(live),
        }

    # ---- sessions -----------------------------------------------------------------------------------------
    def open_session(self, session: StreamSession) -> Future:
        """Place `session` on the least-loaded live actor with room. The Future raises CapacityError / QuotaError
        when there is none (or the key's quota is used), ValueError for an unknown method / preset."""
        with self._registry:
            self.admission.max_streams = self.settings.streams.max * max(1, len(self.backend.live_actors))
            try:
                self.admission.check_count(self.sessions, session)
            except CapacityError as exc:
                fut: Future = Future()
                fut.set_exception(exc)
                return fut
        return self._opener.submit(self._admit, session)

    def _admit(self, session: StreamSession) -> StreamSession:
        spec = {
            "stream_id": session.id, "task": session.task, "method": session.method, "preset": session.preset,
            "encodings": list(session.encodings), "owner": session.owner, "source": session.source,
            "score_threshold": session.instance_filter.score_threshold, "min_area": session.instance_filter.min_area,
            "ttt_view_every": session.ttt_view_every,
        }
        try:
            self.backend.open_stream(spec)
        except Exception as exc:
            raise cause(exc) from None
        session.lane = self.backend.owner(session.id)
        with self._registry:
            self.sessions[session.id] = session
        self.scheduler.add(session)
        self.metrics.active_streams.labels(session.source).inc()
        log.info("stream opened", extra=kv(stream=session.id, source=session.source, actor=session.lane))
        return session

    def close_session(self, session: StreamSession, reason: str = "closed", ended: bool = True) -> Future:
        """Drop the session's queue at once; release it on its owner after the call in flight (its lane). `ended`
        is accepted for the device worker's signature: the actors start no checkpoint retention on close."""
        self.scheduler.remove(session)
        return self.scheduler.submit(lambda: self._close(session, reason), lane=session.lane)

    def _close(self, session: StreamSession, reason: str) -> None:
        if session.id not in self.sessions:
            return
        try:
            self.backend.close_stream(session.id)
        except Exception:  # noqa: BLE001 - the stream is gone either way
            log.warning("closing a stream on its actor failed", extra=kv(stream=session.id), exc_info=True)
        self._forget(session, reason)

    def _forget(self, session: StreamSession, reason: str) -> None:
        with self._registry:
            if self.sessions.pop(session.id, None) is None:
                return
        self.metrics.active_streams.labels(session.source).dec()
        try:
            self.metrics.stream_memory.remove(session.id)
        except KeyError:
            pass
        log.info("stream closed", extra=kv(stream=session.id, reason=reason, processed=session.processed))
        session.send(SessionClosed(session.id, reason))

    def offer(self, session: StreamSession, item: FrameItem) -> bool:
        return self.scheduler.offer(session, item)

    def put(self, session: StreamSession, item: FrameItem, timeout: float | None = None) -> bool:
        return self.scheduler.put(session, item, timeout)

    # ---- in-order controls, run on the owner (`RemoteControls`) -----------------------------------------------
    def control(
        self, session: StreamSession, name: str, fn: Callable[[StreamSession], dict], notify: bool = True
    ) -> Future:
        return self.controls.control(session, name, fn, notify)

    def reset(self, session: StreamSession) -> Future:
        return self.controls.reset(session)

    def checkpoint(self, session: StreamSession) -> Future:
        return self.controls.checkpoint(session)

    def restore(self, session: StreamSession, checkpoint_id: str, caller: Any = None) -> Future:
        return self.controls.restore(session, checkpoint_id, caller)

    # ---- dispatch ------------------------------------------------------------------------------------------
    def _run(self, lane: int) -> None:
        serve_lane(self.scheduler, lane, self._stop, self.controls.run, self._process)

    def _process(self, session: StreamSession, item: FrameItem) -> None:
        """One frame on the stream's owner -> its FrameResult / FrameError delivered here, counters mirrored."""
        start = time.perf_counter()
        try:
            obj, view = self.backend.call(session.id, "process", item)
        except Exception as exc:  # noqa: BLE001 - one stream's failure must not affect the others
            why = cause(exc)
            log.warning("frame failed on its actor", extra=kv(stream=session.id, error=str(why)))
            obj, view = FrameError(session.id, item.frame_id, "adapter_error", f"frame {item.frame_id!r}: {why}"), None
        if view is not None:
            mirror(session, view)
        if isinstance(obj, FrameError):
            session.errors += 1
            self.metrics.frame_errors.labels(session.source).inc()
            session.send(obj)
            return
        if obj.image is None:  # an RTSP / file frame: the actor did not send our own array back
            obj.image = item.data
        obj.step.timings_s["queue"] = obj.step.timings_s.get("queue", 0.0) + (start - item.enqueued)
        obj.dropped = session.dropped
        self.metrics.frames.labels(session.source).inc()
        self.metrics.ray_actor_frames.labels(str(self.backend.owner(session.id))).inc()
        self.metrics.observe_timings(obj.step.timings_s)
        self.metrics.stream_memory.labels(session.id).set(session.memory_bytes)
        ttt = obj.step.ttt_record()
        if ttt.get("rolled_back"):
            self.metrics.rollbacks.labels(session.source).inc()
        m = self.metrics
        for counter, field in ((m.steps_skipped, "steps_skipped"), (m.step_errors, "step_errors")):
            if ttt.get(field):
                counter.labels(session.source).inc(ttt[field])
        session.send(obj)
        self.backend.frame_done(session.id)  # every ray_checkpoint_every results: the failover checkpoint

    # ---- failover and health -------------------------------------------------------------------------------
    def _moved(self, stream_id: str, migrated: dict) -> None:
        """`RayBackend.fail_over` moved a stream (on the dead actor's lane): route its queue to the new owner and
        tell its client before its next result."""
        session = self.sessions.get(stream_id)
        if session is None:
            return
        self.scheduler.repin(session, migrated["to_actor"], lambda: None)
        self.backend.streams[stream_id].migrated = None  # told now, not on the next result
        self.metrics.ray_actor_alive.labels(str(migrated["from_actor"])).set(0)
        session.send({"type": "migrated", "stream_id": stream_id, **migrated})

    def _lost(self, stream_id: str, reason: str) -> None:
        """A failover could not place the stream anywhere: it ends, its client told why (SessionClosed)."""
        session = self.sessions.get(stream_id)
        if session is not None:
            self.scheduler.remove(session)
            self._forget(session, reason)

    def _watch(self) -> None:
        """Every `HEALTH_INTERVAL_S`: `_poll_actors` (a failing round is logged, the next one runs)."""
        while not self._stop.wait(HEALTH_INTERVAL_S):
            try:
                self._poll_actors()
            except Exception:  # noqa: BLE001 - the health thread must outlive any one round
                log.exception("polling the Ray actors failed")

    def _poll_actors(self) -> None:
        """Each live actor's stats (per-actor metrics, capacity); an actor found dead is failed over on its own
        lane, so idle streams move (and hear of it) too."""
        import ray
        from ray.exceptions import RayActorError

        live = self.backend.live_actors
        if not live:
            return
        refs = {i: self.backend.actors[i].stats.remote() for i in live}
        ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=5.0)
        owners = [s.actor for s in list(self.backend.streams.values())]
        for i, ref in refs.items():
            if ref not in ready:
                continue  # busy with a long call: asked again next round
            try:
                stats = ray.get(ref)
            except RayActorError:
                self.actor_stats[i] = None
                self.metrics.ray_actor_alive.labels(str(i)).set(0)
                self.scheduler.submit(lambda i=i: self.backend.fail_over(i), lane=i)
                continue
            self.actor_stats[i] = stats
            self.metrics.ray_actor_alive.labels(str(i)).set(1)
            self.metrics.ray_actor_streams.labels(str(i)).set(owners.count(i))
            self.metrics.ray_actor_rss.labels(str(i)).set(stats["max_rss_bytes"])

__all__ = ["RayDeviceWorker"]
