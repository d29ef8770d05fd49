"""Runs upload jobs one after another: decode -> device worker (policy `block`, never drops) -> result files.

Per job: a producer thread decodes the video with PyAV and queues every frame (blocking when the stream's queue
is full); the runner thread consumes the ordered results and writes them with `VideoResultWriter` while the
device works on the next frames. Admission uses the same capacity as live streams; a job waits (state `queued`,
with a message) until a slot is free.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

from mask2former_ttt.outputs.writer import VideoResultWriter
from mask2former_ttt.video_io import VideoError, fps_fraction, iter_frames
from server.jobs.store import TERMINAL, Job, JobStore
from server.logging_setup import kv
from server.metrics import Metrics
from server.settings import Settings
from server.worker import CapacityError, DeviceWorker, FrameError, FrameItem, FrameResult, StreamSession

log = logging.getLogger(__name__)
SAVE_EVERY_S = 0.5
CAPACITY_RETRY_S = 1.0


class JobCancelled(Exception):
    pass


class JobRunner:
    """One thread working through the job queue."""

    def __init__(self, store: JobStore, worker: DeviceWorker, settings: Settings, metrics: Metrics) -> None:
        self.store = store
        self.worker = worker
        self.settings = settings
        self.metrics = metrics
        cfg = worker.model.cfg
        self.class_names, self.thing_class_ids = list(cfg.class_names), list(cfg.thing_class_ids)
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._cancel: dict[str, threading.Event] = {}
        self._done: dict[str, threading.Event] = {}
        self._thread: threading.Thread | None = None
        self._shutting_down = False
        self.current: str | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="job-runner", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Interrupt the running job (it is queued again on disk and restarts with the service)."""
        self._shutting_down = True
        for ev in list(self._cancel.values()):
            ev.set()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout)

    def enqueue(self, job_id: str) -> None:
        self._cancel[job_id] = threading.Event()
        self._done[job_id] = threading.Event()
        self._queue.put(job_id)

    def cancel(self, job_id: str, wait_s: float = 15.0) -> None:
        """Ask a queued/running job to stop and wait until the runner has let go of its files."""
        ev = self._cancel.get(job_id)
        if ev is None:
            return
        ev.set()
        if self.current == job_id:
            self._done[job_id].wait(wait_s)

    # ---- thread ---------------------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id is None:
                return
            job = self.store.get(job_id)
            cancel = self._cancel[job_id]
            if job is None or job.state in TERMINAL or cancel.is_set():
                self._finish_bookkeeping(job_id)
                continue
            self.current = job_id
            try:
                self._execute(job, cancel)
            except Exception as exc:  # noqa: BLE001 - a job failing must not stop the runner
                log.exception("job crashed", extra=kv(job=job_id))
                self._end(job, "failed", error=f"{type(exc).__name__}: {exc}")
            finally:
                self.current = None
                self._finish_bookkeeping(job_id)

    def _finish_bookkeeping(self, job_id: str) -> None:
        self._done.pop(job_id, threading.Event()).set()
        self._cancel.pop(job_id, None)

    def _admit(self, job: Job, session: StreamSession, cancel: threading.Event) -> bool:
        while not cancel.is_set():
            try:
                self.worker.open_session(session).result()
                return True
            except CapacityError as exc:
                if job.message != f"waiting for capacity: {exc}":
                    job.message = f"waiting for capacity: {exc}"
                    self.store.save(job)
                cancel.wait(CAPACITY_RETRY_S)
        return False

    def _execute(self, job: Job, cancel: threading.Event) -> None:
        results: queue.Queue[Any] = queue.Queue()
        session = StreamSession(
            "job",
            job.task,
            job.method,
            job.preset,
            "block",
            self.settings.queue_size,
            results.put,
            session_id=f"job-{job.id}",
        )
        try:
            if not self._admit(job, session, cancel):
                if not self._shutting_down:  # at shutdown the job simply stays queued
                    self._end(job, "cancelled")
                return
        except ValueError as exc:
            self._end(job, "failed", error=str(exc))
            return
        job.state, job.started, job.message = "running", time.time(), None
        self.store.save(job)
        log.info("job started", extra=kv(job=job.id, task=job.task, method=job.method, frames=job.frames_total))
        input_path = next(self.store.job_dir(job.id).glob("input*"))
        produced: dict[str, Any] = {"count": None, "error": None}
        producer = threading.Thread(
            target=self._produce, args=(input_path, session, produced, cancel), name=f"job-decode-{job.id}", daemon=True
        )
        writer = VideoResultWriter(
            self.store.results_dir(job.id),
            job.task,
            self.class_names,
            self.thing_class_ids,
            fps=fps_fraction(job.video.get("fps")),
        )
        producer.start()
        error: str | None = None
        try:
            error = self._consume(job, session, results, produced, cancel, writer)
        finally:
            closed = self.worker.close_session(session, "job finished")  # also unblocks the producer
            producer.join(10)
            try:
                closed.result(30)  # the slot is free once the job is reported finished
            except Exception as exc:  # noqa: BLE001 - the worker is stopping; the job's state is decided below
                log.info("job session not closed by the worker", extra=kv(job=job.id, error=repr(exc)))
            job.results = writer.close()
        if cancel.is_set() and error is None:
            self._requeue(job) if self._shutting_down else self._end(job, "cancelled")
        elif error or produced["error"]:
            self._end(job, "failed", error=error or produced["error"])
        else:
            job.frames_total = job.frames_done
            self._end(job, "succeeded")

    def _produce(self, path: Any, session: StreamSession, produced: dict, cancel: threading.Event) -> None:
        """Producer thread: decode every frame and queue it, waiting for room (never drops)."""
        count = 0
        try:
            t = time.perf_counter()
            for frame in iter_frames(path, max_width=self.settings.job_max_width):
                decode_s = time.perf_counter() - t
                if cancel.is_set():
                    break
                item = FrameItem(frame_id=frame.index, data=frame.rgb, pts_s=frame.pts_s, decode_s=decode_s)
                if not self.worker.put(session, item):
                    break
                count += 1
                t = time.perf_counter()
        except VideoError as exc:
            produced["error"] = exc.message
        except Exception as exc:  # noqa: BLE001
            produced["error"] = f"decoding failed: {type(exc).__name__}: {exc}"
        finally:
            produced["count"] = count

    def _consume(
        self,
        job: Job,
        session: StreamSession,
        results: queue.Queue,
        produced: dict,
        cancel: threading.Event,
        writer: VideoResultWriter,
    ) -> str | None:
        """Write results in order until every produced frame is back; returns an error message or None."""
        received, last_save, t0 = 0, 0.0, time.perf_counter()
        while not cancel.is_set():
            count = produced["count"]
            if count is not None and received >= count:
                return None
            try:
                obj = results.get(timeout=0.25)
            except queue.Empty:
                continue
            if isinstance(obj, FrameError):
                return obj.message
            if not isinstance(obj, FrameResult):
                continue  # SessionClosed / control replies
            received += 1
            writer.write(obj.index, obj.image, obj.step.result, obj.pts_s, extra=obj.step.record())
            job.frames_done = received
            now = time.perf_counter()
            job.fps = received / (now - t0)
            job.frames_total = max(job.frames_total, received)
            job.eta_s = round((job.frames_total - received) / job.fps, 2) if job.fps else None
            if now - last_save > SAVE_EVERY_S:
                self.store.save(job)
                last_save = now
        return None

    def _requeue(self, job: Job) -> None:
        """Shutdown while running: back to `queued` so that the next start runs the job again from frame 0."""
        job.state, job.started, job.frames_done, job.fps, job.eta_s, job.results = "queued", None, 0, None, None, []
        job.message = "interrupted by a service shutdown; it restarts when the service starts again"
        self.store.save(job)
        log.info("job interrupted by shutdown", extra=kv(job=job.id))

    def _end(self, job: Job, state: str, error: str | None = None) -> None:
        job.state, job.error, job.finished, job.eta_s = state, error, time.time(), 0.0 if state == "succeeded" else None
        job.message = None
        self.store.save(job)
        self.metrics.jobs.labels(state).inc()
        log.info("job finished", extra=kv(job=job.id, state=state, frames=job.frames_done, error=error))
