"""Runs upload jobs: decode -> device worker (policy `block`, never drops) -> result files.

`max_concurrent_jobs` threads take jobs from a `FairJobQueue` (owners take turns; at most `max_jobs_per_key` of
one key's jobs run at once), so a long job never holds the whole queue. Per job: a producer thread decodes the
video with PyAV (enforcing the frame and pixel caps on the real stream, whatever the header said) and queues every
frame (blocking when the stream's queue is full); the job's thread writes the ordered results with
`VideoResultWriter` (resumable mode) while the device works on the next frames. Every `job_checkpoint_s` and when
the service stops, the producer queues a checkpoint (`server.jobs.resume`): the adapter state and the results up
to that frame are committed, and an interrupted job (shutdown or crash) resumes there. Admission uses the same
capacity as live streams; a job waits (state `queued`, with a message) until a slot is free.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path
from typing import Any

from mask2former_ttt.outputs.writer import VideoResultWriter
from mask2former_ttt.video_io import VideoError, iter_frames
from model.postprocess import InstanceFilter
from server.jobs.fair_queue import FairJobQueue
from server.jobs.resume import CHECKPOINT, FINAL_CHECKPOINT, open_writer, prune_states, restore_adapter, save_state
from server.jobs.store import RESULTS, TERMINAL, Job, JobStore
from server.jobs.webhook import WebhookSender
from server.logging_setup import kv
from server.metrics import Metrics
from server.settings import Settings
from server.events import ControlReply, FrameError, FrameResult, SessionClosed
from server.worker import CapacityError, DeviceWorker, FrameItem, StreamSession
from server.worker.stream_session import QUEUE_SIZE

log = logging.getLogger(__name__)
SAVE_EVERY_S = 0.5
CAPACITY_RETRY_S = 1.0


class JobRunner:
    """`max_concurrent_jobs` threads working through the fair job queue."""

    def __init__(self, store: JobStore, worker: DeviceWorker, settings: Settings, metrics: Metrics) -> None:
        self.store = store
        self.worker = worker
        self.settings = settings
        self.metrics = metrics
        cfg = worker.model.cfg
        self.class_names, self.thing_class_ids = list(cfg.class_names), list(cfg.thing_class_ids)
        self.queue = FairJobQueue(settings.jobs.max_per_key)
        self._cancel: dict[str, threading.Event] = {}
        self._done: dict[str, threading.Event] = {}
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self.running: set[str] = set()
        self.webhooks = WebhookSender(settings)  # called from `_end`, on its own thread

    def start(self) -> None:
        self._threads = [
            threading.Thread(target=self._run, name=f"job-runner-{i}", daemon=True)
            for i in range(self.settings.jobs.max_concurrent)
        ]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        """Service shutdown: running jobs commit a checkpoint at the frame they reached and go back to `queued`
        on disk (they resume there when the service starts again); queued jobs stay queued."""
        self._stopping.set()
        self.webhooks.stop()
        self.queue.close()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def enqueue(self, job_id: str) -> None:
        """Queue a job (its owner's turn comes round-robin among the owners with queued jobs)."""
        job = self.store.get(job_id)
        self._cancel[job_id] = threading.Event()
        self._done[job_id] = threading.Event()
        self.queue.put(job_id, getattr(job, "owner", ""))

    def queued_jobs(self, owner: str) -> int:
        """Jobs of `owner` waiting in the queue (not yet taken by a runner thread)."""
        return self.queue.queued(owner)

    def cancel(self, job_id: str, wait_s: float = 15.0) -> None:
        """Ask a queued/running job to stop and wait until the runner has let go of its files."""
        ev = self._cancel.get(job_id)
        if ev is None:
            return
        ev.set()
        if self.queue.remove(job_id):
            self._finish_bookkeeping(job_id)
        elif job_id in self.running:
            self._done[job_id].wait(wait_s)

    # ---- threads --------------------------------------------------------------------------------------------
    def _run(self) -> None:
        while (picked := self.queue.take()) is not None:
            job_id, owner = picked
            try:
                self._run_job(job_id)
            finally:
                self.queue.done(owner)

    def _run_job(self, job_id: str) -> None:
        job = self.store.get(job_id)
        cancel = self._cancel.get(job_id) or threading.Event()
        if job is None or job.state in TERMINAL or cancel.is_set():
            self._finish_bookkeeping(job_id)
            return
        self.running.add(job_id)
        try:
            self._execute(job, cancel)
        except Exception as exc:  # noqa: BLE001 - a job failing must not stop the runner
            log.exception("job crashed", extra=kv(job=job_id))
            self._end(job, "failed", error=f"{type(exc).__name__}: {exc}")
        finally:
            self.running.discard(job_id)
            self._finish_bookkeeping(job_id)

    def _finish_bookkeeping(self, job_id: str) -> None:
        self._done.pop(job_id, threading.Event()).set()
        self._cancel.pop(job_id, None)

    def _admit(self, job: Job, session: StreamSession, cancel: threading.Event) -> bool:
        while not cancel.is_set() and not self._stopping.is_set():
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
            "job", job.task, job.method, job.preset, "block", QUEUE_SIZE, results.put,
            session_id=f"job-{job.id}", instance_filter=InstanceFilter(job.score_threshold, job.min_area),
        )
        try:
            if not self._admit(job, session, cancel):
                if not self._stopping.is_set():  # at shutdown the job simply stays queued
                    self._end(job, "cancelled")
                return
        except ValueError as exc:
            self._end(job, "failed", error=str(exc))
            return
        job_dir = self.store.job_dir(job.id)
        writer, start = open_writer(
            job, job_dir / RESULTS, self.class_names, self.thing_class_ids, self.worker.model.cfg.class_colors
        )
        restore_adapter(self.worker, job, session, job_dir, start)
        job.state, job.started, job.message, job.frames_done = "running", time.time(), None, start
        self.store.save(job)
        log.info("job started", extra=kv(job=job.id, task=job.task, frames=job.frames_total, resume_at=start))
        input_path = next(job_dir.glob("input*"))
        produced: dict[str, Any] = {"count": None, "error": None, "eof": False}
        producer = threading.Thread(
            target=self._produce,
            args=(input_path, job_dir, session, produced, cancel, start),
            name=f"job-decode-{job.id}",
            daemon=True,
        )
        producer.start()
        outcome, error = "closed", None
        try:
            outcome, error = self._consume(job, session, results, produced, cancel, writer)
        finally:
            closed = self.worker.close_session(session, "job finished")  # also unblocks the producer
            producer.join(10)
            try:
                closed.result(30)  # the slot is free once the job is reported finished
            except Exception as exc:  # noqa: BLE001 - the worker is stopping; the job's state is decided below
                log.info("job session not closed by the worker", extra=kv(job=job.id, error=repr(exc)))
            if outcome == "final" and produced["eof"]:
                job.results = writer.close()
            else:
                writer.suspend()
        error = error or produced["error"]
        if cancel.is_set():
            self._end(job, "cancelled")
        elif error:
            self._end(job, "failed", error=error)
        elif outcome == "final" and produced["eof"]:
            prune_states(job_dir, None)
            job.frames_total = job.frames_done
            self._end(job, "succeeded")
        elif self._stopping.is_set():
            self._requeue(job)
        else:
            self._end(job, "failed", error="the device worker closed the job's stream")

    def _produce(
        self, path: Path, job_dir: Path, session: StreamSession, produced: dict, cancel: threading.Event, start: int
    ) -> None:
        """Producer thread: decode every frame from `start` and queue it, waiting for room (never drops); queue a
        checkpoint every `job_checkpoint_s` and a final one after the last frame queued (end or shutdown)."""
        s = self.settings
        count, last_checkpoint = start, time.monotonic()
        try:
            t = time.perf_counter()
            frames = iter_frames(
                path, start=start, frame_limit=s.upload.max_frames, max_pixels=s.upload.max_pixels
            )
            for frame in frames:
                decode_s = time.perf_counter() - t
                if cancel.is_set() or self._stopping.is_set():
                    break
                item = FrameItem(frame_id=frame.index, data=frame.rgb, pts_s=frame.pts_s, decode_s=decode_s)
                if not self.worker.put(session, item):
                    break
                count += 1
                if time.monotonic() - last_checkpoint >= s.jobs.checkpoint_s:
                    self.worker.control(session, CHECKPOINT, save_state(job_dir))
                    last_checkpoint = time.monotonic()
                t = time.perf_counter()
            else:
                produced["eof"] = True
        except VideoError as exc:
            produced["error"] = f"{exc.kind}: {exc.message}"
        except Exception as exc:  # noqa: BLE001
            produced["error"] = f"decoding failed: {type(exc).__name__}: {exc}"
        finally:
            produced["count"] = count
            if produced["error"] is None and not cancel.is_set():
                self.worker.control(session, FINAL_CHECKPOINT, save_state(job_dir))

    def _consume(
        self,
        job: Job,
        session: StreamSession,
        results: queue.Queue,
        produced: dict,
        cancel: threading.Event,
        writer: VideoResultWriter,
    ) -> tuple[str, str | None]:
        """Write results in order until the final checkpoint; returns (outcome, error): `final` (every queued frame
        is written and committed), `error`, `closed` (the worker closed the stream) or `cancelled`."""
        received, last_save, t0 = 0, 0.0, time.perf_counter()
        while not cancel.is_set():
            if produced["error"] is not None and produced["count"] is not None:
                return "error", produced["error"]
            try:
                obj = results.get(timeout=0.25)
            except queue.Empty:
                continue
            if isinstance(obj, FrameError):
                return "error", obj.message
            if isinstance(obj, SessionClosed):
                return "closed", None
            if isinstance(obj, ControlReply) and obj.name in (CHECKPOINT, FINAL_CHECKPOINT):
                self._commit(job, writer, obj)
                if obj.name == FINAL_CHECKPOINT:
                    return "final", None
                continue
            if not isinstance(obj, FrameResult):
                continue  # other control replies
            received += 1
            writer.write(obj.frame_id, obj.image, obj.step.result, obj.pts_s, extra=obj.step.record())
            job.frames_done = writer.frames
            now = time.perf_counter()
            job.fps = received / (now - t0)
            job.frames_total = max(job.frames_total, job.frames_done)
            job.eta_s = round((job.frames_total - job.frames_done) / job.fps, 2) if job.fps else None
            if now - last_save > SAVE_EVERY_S:
                self.store.save(job)
                last_save = now
        return "cancelled", None

    def _commit(self, job: Job, writer: VideoResultWriter, reply: ControlReply) -> None:
        """A checkpoint came back: commit the result files and record `{frames, state}` in job.json."""
        frames = writer.commit()
        if reply.error or reply.payload.get("frames") != frames:
            log.warning(
                "job checkpoint state not usable: the previous one is kept",
                extra=kv(job=job.id, error=reply.error, state_frames=reply.payload.get("frames"), frames=frames),
            )
            return
        job.checkpoint = {"frames": frames, "state": reply.payload["state"]}
        job.frames_done = frames
        self.store.save(job)
        prune_states(self.store.job_dir(job.id), reply.payload["state"])

    def _requeue(self, job: Job) -> None:
        """Shutdown while running: back to `queued`; the next start resumes at the committed frame."""
        frames = int((job.checkpoint or {}).get("frames", 0))
        job.state, job.started, job.frames_done, job.fps, job.eta_s = "queued", None, frames, None, None
        job.message = f"interrupted by a service shutdown; it resumes at frame {frames} when the service starts again"
        self.store.save(job)
        log.info("job interrupted by shutdown", extra=kv(job=job.id, resume_at=frames))

    def _end(self, job: Job, state: str, error: str | None = None) -> None:
        job.state, job.error, job.finished, job.eta_s = state, error, time.time(), 0.0 if state == "succeeded" else None
        job.message = None
        self.store.save(job)
        self.metrics.jobs.labels(state).inc()
        log.info("job finished", extra=kv(job=job.id, state=state, frames=job.frames_done, error=error))
        self.webhooks.notify(job)
