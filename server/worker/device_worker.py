"""The device worker: one thread that owns the model on the device and runs every stream's TTT step.

All adapter calls (create, step, reset, state I/O) happen on this thread, so each stream has exactly one
writer and frames of a stream are processed strictly in arrival order. Client images are decoded here, lazily,
so frames dropped by the `latest` policy cost no decoding; post-processing runs here too (on the device), and
results leave as CPU tensors for the consumers, which encode them (RLE / PNG / JPEG) on their own threads.

Streams are served round-robin (see `Scheduler`). Admission control reserves per-stream memory (the adapter's
own estimate, or the largest footprint seen for that method/preset) against `max_state_memory` and caps the
number of streams.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import threading
import time
import uuid
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable

import torch

from model.postprocess import postprocess
from model.ymodel import YModel
from server.logging_setup import kv
from server.metrics import Metrics
from server.worker.imaging import ImageDecodeError, decode_image, result_size
from server.worker.scheduler import Scheduler
from server.worker.stream_session import (
    ControlItem,
    ControlReply,
    FrameError,
    FrameItem,
    FrameResult,
    SessionClosed,
    StreamSession,
)

log = logging.getLogger(__name__)

AdapterFactory = Callable[[YModel, str, str, int], Any]
CHECKPOINT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
STATE_FORMAT = "m2f-ttt-stream-state/1"
LIVE_UNSUPPORTED = {"offline_all_frames": "needs the whole video before its first prediction; use the offline CLI"}


class CapacityError(RuntimeError):
    """A new stream does not fit. `reason` is `streams` or `memory`; the message says what is full."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def default_adapter_factory(model: YModel, method: str, preset: str, seed: int) -> Any:
    """`mask2former_ttt.ttt.build_adapter`, refusing methods that cannot run on a live stream."""
    from mask2former_ttt.ttt import build_adapter

    if method in LIVE_UNSUPPORTED:
        raise ValueError(f"method {method!r} cannot serve streams: it {LIVE_UNSUPPORTED[method]}")
    return build_adapter(model, method=method, preset=preset, seed=seed)


def _to_cpu(result: Any) -> Any:
    """A post-processing result with its tensors on the CPU (encoders run on other threads, in numpy)."""
    moved = {f.name: getattr(result, f.name) for f in dataclasses.fields(result)}
    return dataclasses.replace(result, **{k: v.cpu() for k, v in moved.items() if torch.is_tensor(v)})


def _estimate_bytes(adapter: Any) -> int:
    estimate = getattr(adapter, "estimated_memory_bytes", None)
    return int(estimate()) if callable(estimate) else int(adapter.memory_bytes())


class DeviceWorker:
    """Owner of the model: sessions, admission, in-order processing, state checkpoint/restore."""

    def __init__(
        self,
        model: YModel,
        metrics: Metrics,
        *,
        max_streams: int,
        max_state_memory: int,
        states_dir: Path,
        max_frame_pixels: int = 4096 * 4096,
        max_result_side: int = 640,
        seed: int = 0,
        torch_threads: int | None = None,
        adapter_factory: AdapterFactory = default_adapter_factory,
    ) -> None:
        self.model = model
        self.metrics = metrics
        self.max_streams = max_streams
        self.max_state_memory = max_state_memory
        self.states_dir = Path(states_dir)
        self.max_frame_pixels = max_frame_pixels
        self.max_result_side = max_result_side
        self.seed = seed
        self.torch_threads = torch_threads
        self.adapter_factory = adapter_factory
        self.sessions: dict[str, StreamSession] = {}
        self.scheduler = Scheduler(on_drop=lambda s: metrics.drops.labels(s.source).inc())
        self._peak_bytes: dict[tuple[str, str], int] = {}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.frames_processed = 0

    # ---- lifecycle ----------------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="device-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread; every open session gets `SessionClosed("server shutting down")`."""
        self._stop.set()
        for _, fut in self.scheduler.stop():
            fut.set_exception(RuntimeError("the device worker stopped"))
        if self._thread is not None:
            self._thread.join(timeout)
        for session in list(self.sessions.values()):
            self._close(session, "server shutting down")

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stop.is_set()

    # ---- capacity -----------------------------------------------------------------------------------------
    def reserved_bytes(self) -> int:
        return sum(s.reserved_bytes for s in list(self.sessions.values()))

    def capacity(self) -> dict:
        """Streams and memory in use vs limits; `available` tells whether one more stream is likely to fit."""
        used = self.reserved_bytes()
        typical = max(self._peak_bytes.values(), default=0)
        return {
            "streams": len(self.sessions),
            "max_streams": self.max_streams,
            "reserved_bytes": used,
            "max_state_memory": self.max_state_memory,
            "available": len(self.sessions) < self.max_streams and used + typical <= self.max_state_memory,
        }

    # ---- sessions -----------------------------------------------------------------------------------------
    def open_session(self, session: StreamSession) -> Future:
        """Admit `session` (builds its adapter on the worker thread). The Future raises CapacityError when full,
        ValueError for an unknown method/preset."""
        if len(self.sessions) >= self.max_streams:  # cheap early refusal, re-checked on the worker
            fut: Future = Future()
            fut.set_exception(self._full_streams())
            self.metrics.refusals.labels("streams").inc()
            return fut
        return self.scheduler.submit(lambda: self._admit(session))

    def close_session(self, session: StreamSession, reason: str = "closed") -> Future:
        """Drop the session's queue at once and release its adapter on the worker thread."""
        self.scheduler.remove(session)
        return self.scheduler.submit(lambda: self._close(session, reason))

    def _full_streams(self) -> CapacityError:
        return CapacityError(
            "streams",
            f"the service is full: {len(self.sessions)} of {self.max_streams} streams are active; try again later",
        )

    def _admit(self, session: StreamSession) -> StreamSession:
        if len(self.sessions) >= self.max_streams:
            self.metrics.refusals.labels("streams").inc()
            raise self._full_streams()
        adapter = self.adapter_factory(self.model, session.method, session.preset, self.seed)
        need = max(_estimate_bytes(adapter), self._peak_bytes.get((session.method, session.preset), 0))
        used = self.reserved_bytes()
        if used + need > self.max_state_memory:
            self.metrics.refusals.labels("memory").inc()
            raise CapacityError(
                "memory",
                f"not enough memory for another stream: {used} of {self.max_state_memory} bytes are reserved by "
                f"{len(self.sessions)} streams and this one needs about {need}; try again later",
            )
        session.adapter = adapter
        session.reserved_bytes = need
        session.memory_bytes = int(adapter.memory_bytes())
        self.sessions[session.id] = session
        self.scheduler.add(session)
        self.metrics.active_streams.labels(session.source).inc()
        self.metrics.stream_memory.labels(session.id).set(session.memory_bytes)
        log.info(
            "stream opened",
            extra=kv(
                stream=session.id,
                source=session.source,
                method=session.method,
                preset=session.preset,
                task=session.task,
                reserved_bytes=need,
            ),
        )
        return session

    def _close(self, session: StreamSession, reason: str) -> None:
        self.scheduler.remove(session)
        if self.sessions.pop(session.id, None) is None:
            return
        session.adapter = None
        self.metrics.active_streams.labels(session.source).dec()
        try:
            self.metrics.stream_memory.remove(session.id)
        except KeyError:
            pass
        log.info(
            "stream closed",
            extra=kv(
                stream=session.id,
                reason=reason,
                processed=session.processed,
                dropped=session.dropped,
                errors=session.errors,
            ),
        )
        self._deliver(session, SessionClosed(session.id, reason))

    # ---- producers ------------------------------------------------------------------------------------------
    def offer(self, session: StreamSession, item: FrameItem) -> bool:
        return self.scheduler.offer(session, item)

    def put(self, session: StreamSession, item: FrameItem, timeout: float | None = None) -> bool:
        return self.scheduler.put(session, item, timeout)

    def control(self, session: StreamSession, name: str, fn: Callable[[StreamSession], dict]) -> Future:
        """Queue an in-order control: it runs after the frames queued before it. Its outcome is both delivered to
        the session as a ControlReply and set on the returned Future (failed at once if the stream is closed)."""
        fut: Future = Future()

        def run(s: StreamSession) -> dict:
            try:
                payload = fn(s)
            except BaseException as exc:
                fut.set_exception(exc)
                raise
            fut.set_result(payload)
            return payload

        if not self.scheduler.offer(session, ControlItem(name, run)):
            fut.set_exception(RuntimeError(f"stream {session.id} is closed"))
        return fut

    # ---- stream-scoped controls (run on the worker thread via `control`) ----------------------------------
    @staticmethod
    def do_reset(session: StreamSession) -> dict:
        session.adapter.reset()
        return {"frames_before_reset": session.processed}

    def do_checkpoint(self, session: StreamSession) -> dict:
        """torch.save the adapter's state to `states_dir/<checkpoint_id>.pt`."""
        checkpoint_id = f"{session.id}-{uuid.uuid4().hex[:8]}"
        self.states_dir.mkdir(parents=True, exist_ok=True)
        path = self.states_dir / f"{checkpoint_id}.pt"
        blob = {
            "format": STATE_FORMAT,
            "method": session.method,
            "preset": session.preset,
            "frames": session.processed,
            "state": session.adapter.state_dict(),
        }
        torch.save(blob, path)
        log.info("stream checkpoint", extra=kv(stream=session.id, checkpoint=checkpoint_id, bytes=path.stat().st_size))
        return {"checkpoint_id": checkpoint_id, "bytes": path.stat().st_size, "frames": session.processed}

    def checkpoint_path(self, checkpoint_id: str) -> Path:
        """Path of a checkpoint id; ValueError for ids that are not ours (no path tricks) or do not exist."""
        if not CHECKPOINT_ID.match(checkpoint_id or ""):
            raise ValueError("checkpoint_id must be 1-64 characters of A-Z a-z 0-9 _ -")
        path = self.states_dir / f"{checkpoint_id}.pt"
        if not path.is_file():
            raise ValueError(f"no checkpoint {checkpoint_id!r}")
        return path

    def do_restore(self, session: StreamSession, checkpoint_id: str) -> dict:
        blob = torch.load(self.checkpoint_path(checkpoint_id), map_location="cpu", weights_only=True)
        if blob.get("format") != STATE_FORMAT:
            raise ValueError(f"checkpoint {checkpoint_id!r} is not a stream state")
        if (blob["method"], blob["preset"]) != (session.method, session.preset):
            raise ValueError(
                f"checkpoint {checkpoint_id!r} is for method={blob['method']} preset={blob['preset']}, "
                f"this stream runs method={session.method} preset={session.preset}"
            )
        session.adapter.load_state_dict(blob["state"])
        return {"checkpoint_id": checkpoint_id, "frames": blob["frames"]}

    # ---- the thread -----------------------------------------------------------------------------------------
    def _run(self) -> None:
        previous_threads = torch.get_num_threads()
        if self.torch_threads:
            torch.set_num_threads(self.torch_threads)  # process-wide in torch: restored when the worker stops
        log.info("device worker started", extra=kv(threads=torch.get_num_threads()))
        try:
            while not self._stop.is_set():
                work = self.scheduler.next(timeout=0.25)
                if work is None:
                    continue
                kind, a, b = work
                if kind == "command":
                    self._run_command(a, b)
                elif isinstance(b, ControlItem):
                    self._run_control(a, b)
                else:
                    self._process(a, b)
        finally:
            torch.set_num_threads(previous_threads)
            log.info("device worker stopped")

    @staticmethod
    def _run_command(fn: Callable[[], Any], fut: Future) -> None:
        if not fut.set_running_or_notify_cancel():
            return
        try:
            fut.set_result(fn())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            fut.set_exception(exc)

    def _run_control(self, session: StreamSession, item: ControlItem) -> None:
        try:
            reply = ControlReply(session.id, item.name, item.fn(session))
        except Exception as exc:  # noqa: BLE001 - reported to this stream only
            log.warning("stream control failed", extra=kv(stream=session.id, control=item.name, error=str(exc)))
            reply = ControlReply(session.id, item.name, {}, f"{item.name} failed: {exc}")
        self._deliver(session, reply)

    def _deliver(self, session: StreamSession, obj: Any) -> None:
        try:
            session.deliver(obj)
        except Exception:  # noqa: BLE001 - a gone consumer must not stop the worker
            log.debug("deliver failed", extra=kv(stream=session.id), exc_info=True)

    def _process(self, session: StreamSession, item: FrameItem) -> None:
        start = time.perf_counter()
        timings = {"queue": start - item.enqueued}
        try:
            if isinstance(item.data, bytes):
                rgb = decode_image(item.data, self.max_frame_pixels)
            else:
                rgb = item.data
            t = time.perf_counter()
            timings["decode"] = item.decode_s + (t - start)
            res = session.adapter.step(torch.from_numpy(rgb).permute(2, 0, 1))
            st = res.stats
            timings["ttt"] = st.ttt_forward_s + st.ttt_backward_s + st.optimizer_s
            timings["predict"] = st.predict_s
            t = time.perf_counter()
            cfg = self.model.cfg
            out = postprocess(
                res.class_logits,
                res.mask_logits,
                session.task,
                out_size=result_size(rgb.shape[0], rgb.shape[1], self.max_result_side),
                thing_class_ids=cfg.thing_class_ids,
                object_mask_threshold=cfg.object_mask_threshold,
                overlap_threshold=cfg.overlap_threshold,
            )
            out = _to_cpu(out)
            timings["postprocess"] = time.perf_counter() - t
        except ImageDecodeError as exc:
            self._frame_failed(session, item, "bad_image", f"frame {item.frame_id!r}: {exc}")
            return
        except Exception as exc:  # noqa: BLE001 - one stream's failure must not affect the others
            log.exception("adapter step failed", extra=kv(stream=session.id, frame=item.frame_id))
            self._frame_failed(session, item, "adapter_error", f"frame {item.frame_id!r}: {type(exc).__name__}: {exc}")
            return
        session.processed += 1
        self.frames_processed += 1
        session.last_loss = st.loss if st.loss is None or math.isfinite(st.loss) else None  # JSON has no NaN
        session.memory_bytes = int(session.adapter.memory_bytes())
        session.reserved_bytes = max(session.reserved_bytes, session.memory_bytes)
        key = (session.method, session.preset)
        self._peak_bytes[key] = max(self._peak_bytes.get(key, 0), session.memory_bytes)
        if st.rolled_back:
            self.metrics.rollbacks.labels(session.source).inc()
        session.rollbacks = st.rollbacks
        self.metrics.frames.labels(session.source).inc()
        self.metrics.stream_memory.labels(session.id).set(session.memory_bytes)
        self.metrics.observe_timings(timings)
        self._deliver(
            session,
            FrameResult(
                stream_id=session.id,
                frame_id=item.frame_id,
                index=session.processed - 1,
                task=session.task,
                image=rgb,
                result=out,
                loss=session.last_loss,
                rolled_back=st.rolled_back,
                rollbacks=st.rollbacks,
                timings_s=timings,
                encodings=session.encodings,
                received=item.received,
                capture_ts=item.capture_ts,
                pts_s=item.pts_s,
                dropped=session.dropped,
                memory_bytes=session.memory_bytes,
                shift_score=st.shift_score,
                step_scale=st.step_scale,
            ),
        )

    def _frame_failed(self, session: StreamSession, item: FrameItem, code: str, message: str) -> None:
        session.errors += 1
        self.metrics.frame_errors.labels(session.source).inc()
        self._deliver(session, FrameError(session.id, item.frame_id, code, message))
