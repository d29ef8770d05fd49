"""The device worker: the lanes that own the model on the device and run every stream's frames.

A lane is a thread with its own replica of the model (`functional_call` swaps a stream's tensors into the module it
runs, so two threads must not share one). Each stream is pinned to the least-loaded lane when it is admitted, and
all of its adapter calls (create, step, reset, state I/O) happen on that lane's thread, so each stream has exactly
one writer and its frames are processed strictly in arrival order; lanes run in parallel (torch releases the GIL),
which is how several streams use several cores. With a pipelined preset the lane sends a frame's result before
taking that frame's TTT step (`Adapter.finish_pending`); with the asynchronous schedule the lane only predicts, and
the steps run on the worker's one `StepExecutor` (see `DeviceWorker.step_executor`). Client images are decoded off
the lanes, on `DecodeAhead`'s threads from the moment they are queued (a frame dropped before its turn is
cancelled), so a lane finds them decoded; with `decode_threads=0` the lane decodes them itself, lazily. Each frame
goes through `mask2former_ttt.ttt.frame_step.step_frame` (TTT step -> prediction -> post-processing, results on the
CPU), or, with `cross_stream_batch` > 1, the head frames of several of a lane's streams go through one batched call
(`mask2former_ttt.ttt.cross_stream`); the consumers encode results (RLE / PNG / JPEG) on their own threads.

The worker is composed of collaborators, each with its own state, built in its constructor and given what they use:
`Scheduler` (queues, round-robin), `FrameProcessor` (a lane's frames -> results), `StreamControls` (in-order
controls), `LaneBalancer` (lane loads and moves), `Admission` (stream and memory limits), `StreamStateStore`
(checkpoint / restore files) and `DecodeAhead` (image decoding off the lanes).
"""

from __future__ import annotations

import copy
import functools
import logging
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable

import torch

from model.ymodel import YModel
from mask2former_ttt.ttt.methods import build_adapter, check_method
from mask2former_ttt.ttt.protocol import Adapter
from mask2former_ttt.ttt.step_executor import StepExecutor, StepExecutorClient
from server.logging_setup import kv
from server.metrics import Metrics
from server.worker.admission import Admission, CapacityError
from server.worker.controls import StreamControls
from server.events import SessionClosed
from server.worker.decode_ahead import DecodeAhead
from server.worker.frame_processing import FrameProcessor
from server.worker.imaging import MAX_RESULT_SIDE
from server.worker.memory_trim import release_freed_memory
from server.worker.rebalance import LaneBalancer
from server.worker.scheduler import Scheduler, serve_lane
from server.worker.state_store import StreamStateStore
from server.worker.stream_session import FrameItem, StreamSession

log = logging.getLogger(__name__)

AdapterFactory = Callable[[YModel, str, str, int], Adapter]
__all__ = ["AdapterFactory", "CapacityError", "DeviceWorker", "default_adapter_factory"]


def default_adapter_factory(model: YModel, method: str, preset: str, seed: int, schedule: str | None = None) -> Adapter:
    """`mask2former_ttt.ttt.build_adapter`, refusing methods that cannot serve a stream frame by frame
    (`schedule`: every stream's `TTTConfig.schedule` instead of its preset's)."""
    check_method(method, live=True)
    overrides = {"schedule": schedule} if schedule else {}
    return build_adapter(model, method=method, preset=preset, seed=seed, **overrides)


def scheduled_adapter_factory(schedule: str) -> AdapterFactory:
    """`default_adapter_factory` with every stream on `schedule` (the `M2F_TTT_SCHEDULE` setting)."""
    return functools.partial(default_adapter_factory, schedule=schedule)


class DeviceWorker:
    """Owner of the model: the session registry and the lanes that run every stream's frames and controls."""

    def __init__(
        self,
        model: YModel,
        metrics: Metrics,
        *,
        max_streams: int,
        max_state_memory: int,
        states_dir: Path | StreamStateStore,
        max_frame_pixels: int = 4096 * 4096,
        max_result_side: int = MAX_RESULT_SIDE,
        seed: int = 0,
        torch_threads: int | None = None,
        lanes: int = 1,
        cross_stream_batch: int = 1,
        decode_threads: int = 1,
        adapter_factory: AdapterFactory = default_adapter_factory,
        max_streams_per_owner: int | None = None,
    ) -> None:
        if lanes < 1:
            raise ValueError(f"lanes must be at least 1, got {lanes}")
        if cross_stream_batch < 1:
            raise ValueError(f"cross_stream_batch must be at least 1, got {cross_stream_batch}")
        self.cross_stream_batch = cross_stream_batch
        self.model = model
        self.models = [model] + [copy.deepcopy(model) for _ in range(lanes - 1)]  # one replica per lane
        self.metrics = metrics
        self.admission = Admission(metrics, max_streams, max_state_memory, max_streams_per_owner)
        self.states = states_dir if isinstance(states_dir, StreamStateStore) else StreamStateStore(states_dir)
        self.max_frame_pixels = max_frame_pixels
        self.decoder = DecodeAhead(decode_threads, max_frame_pixels)
        self.max_result_side = max_result_side
        self.seed = seed
        self.torch_threads = torch_threads
        self.adapter_factory = adapter_factory
        self.sessions: dict[str, StreamSession] = {}
        self._executor: StepExecutor | None = None  # made for the first stream with the asynchronous schedule
        self._executor_lock = threading.Lock()
        self.scheduler = Scheduler(on_drop=lambda s: metrics.drops.labels(s.source).inc())
        self._registry = threading.Lock()  # sessions, admission and lane loads: lanes admit and close concurrently
        self.balancer = LaneBalancer(self.models, self.scheduler, self._build_adapter, seed, self._registry)
        self.controls = StreamControls(self.scheduler, self.states)
        self.processor = FrameProcessor(self.decoder, metrics, self.admission, max_result_side)
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()

    # ---- lifecycle ----------------------------------------------------------------------------------------
    @property
    def lanes(self) -> int:
        return len(self.models)

    def start(self) -> None:
        self._threads = [
            threading.Thread(target=self._run, args=(lane,), name=f"device-worker-{lane}", daemon=True)
            for lane in range(self.lanes)
        ]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread; every open session gets `SessionClosed("server shutting down")`."""
        self._stop.set()
        for _, fut in self.scheduler.stop():
            if not fut.done():  # a caller may have cancelled it
                fut.set_exception(RuntimeError("the device worker stopped"))
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        for session in list(self.sessions.values()):
            self._close(session, "server shutting down")
        if self._executor is not None:
            self._executor.stop(max(0.0, deadline - time.monotonic()))
        self.decoder.shutdown()

    @property
    def alive(self) -> bool:
        return bool(self._threads) and all(t.is_alive() for t in self._threads) and not self._stop.is_set()

    def capacity(self) -> dict:
        """Streams and memory in use vs limits (see `Admission.capacity`)."""
        with self._registry:
            return self.admission.capacity(list(self.sessions.values()))

    # ---- sessions -----------------------------------------------------------------------------------------
    def open_session(self, session: StreamSession) -> Future:
        """Admit `session` on the least-loaded lane (its adapter is built on that lane's thread). The Future raises
        CapacityError when full, ValueError for an unknown method/preset."""
        with self._registry:
            try:
                self.admission.check_count(self.sessions, session)  # cheap early refusal, re-checked on the lane
            except CapacityError as exc:
                fut: Future = Future()
                fut.set_exception(exc)
                return fut
            session.lane = self.balancer.pin()
        fut = self.scheduler.submit(lambda: self._admit(session), lane=session.lane)
        fut.add_done_callback(lambda f: None if not f.cancelled() and f.exception() is None else self._unpin(session))
        return fut

    def _unpin(self, session: StreamSession) -> None:
        with self._registry:
            self.balancer.unpin(session.lane)

    def close_session(self, session: StreamSession, reason: str = "closed", ended: bool = True) -> Future:
        """Drop the session's queue at once and release its adapter on the worker thread. `ended` starts the
        retention clock of the stream's checkpoints; False keeps them for a stream that comes back under the same
        id (a camera waiting for its connection)."""
        self.scheduler.remove(session)
        return self.scheduler.submit(lambda: self._close(session, reason, ended), lane=session.lane)

    def _admit(self, session: StreamSession) -> StreamSession:
        with self._registry:
            self.admission.check_count(self.sessions, session)
        adapter = self._build_adapter(self.models[session.lane], session.method, session.preset, self.seed)
        session.steps_in_background = _in_background(adapter)
        with self._registry:
            session.reserved_bytes = self.admission.reserve(list(self.sessions.values()), session, adapter)
            session.adapter = adapter
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
                reserved_bytes=session.reserved_bytes,
            ),
        )
        return session

    def _close(self, session: StreamSession, reason: str, ended: bool = True) -> None:
        self.scheduler.remove(session)
        with self._registry:
            if self.sessions.pop(session.id, None) is None:
                return
            self.balancer.unpin(session.lane)
        _release(session.adapter)
        session.adapter = None
        release_freed_memory()  # the stream's tensors and buffers back to the OS, not kept by the allocator
        if ended:
            self.states.index.stream_ended(session.id)
        self.balancer.rebalance(self.sessions)
        self.metrics.active_streams.labels(session.source).dec()
        try:
            self.metrics.stream_memory.remove(session.id)
        except KeyError:
            pass
        log.info(
            "stream closed",
            extra=kv(
                stream=session.id, reason=reason, processed=session.processed, dropped=session.dropped, errors=session.errors
            ),
        )
        session.send(SessionClosed(session.id, reason))

    # ---- the asynchronous schedule's steps --------------------------------------------------------------------
    def step_executor(self) -> StepExecutor:
        """The worker's one step executor (ttt/step_executor.py), made with its own model replica for the first
        stream with the asynchronous schedule and stopped with the worker.

        One per worker rather than per lane: every lane already keeps the cores busy with predictions (one lane per
        core on the CPU, one lane on CUDA), so a step thread per lane would only add threads contending for the
        same cores and a model replica each, while one thread taking every stream's steps in turn bounds the
        adaptation work to one core's worth and shares its skips fairly (round-robin)."""
        with self._executor_lock:
            if self._executor is None:
                self._executor = StepExecutor(self.model, name="ttt-steps")
            return self._executor

    def _build_adapter(self, model: YModel, method: str, preset: str, seed: int) -> Adapter:
        """The factory's adapter, its steps bound to the worker's step executor when its schedule asks for one."""
        adapter = self.adapter_factory(model, method, preset, seed)
        if isinstance(adapter, StepExecutorClient) and adapter.wants_step_executor:
            adapter.use_step_executor(self.step_executor())
        return adapter

    # ---- producers ------------------------------------------------------------------------------------------
    def offer(self, session: StreamSession, item: FrameItem) -> bool:
        self.decoder.start(item)
        return self.scheduler.offer(session, item)

    def put(self, session: StreamSession, item: FrameItem, timeout: float | None = None) -> bool:
        self.decoder.start(item)
        return self.scheduler.put(session, item, timeout)

    # ---- in-order controls (`StreamControls`) ----------------------------------------------------------------
    def control(
        self, session: StreamSession, name: str, fn: Callable[[StreamSession], dict], notify: bool = True
    ) -> Future:
        """`fn(session)` on the stream's lane after its queued frames (`StreamControls.control`; `notify`: its reply
        also goes to the stream's consumer)."""
        return self.controls.control(session, name, fn, notify)

    def reset(self, session: StreamSession) -> Future:
        return self.controls.reset(session)

    def checkpoint(self, session: StreamSession) -> Future:
        return self.controls.checkpoint(session)

    def restore(self, session: StreamSession, checkpoint_id: str, caller: Any = None) -> Future:
        return self.controls.restore(session, checkpoint_id, caller)

    # ---- the thread -----------------------------------------------------------------------------------------
    def _run(self, lane: int) -> None:
        previous_threads = torch.get_num_threads()
        if self.torch_threads:
            torch.set_num_threads(self.torch_threads)  # restored when the worker stops
        log.info("device worker started", extra=kv(lane=lane, lanes=self.lanes, threads=torch.get_num_threads()))
        try:
            serve_lane(self.scheduler, lane, self._stop, self.controls.run, self.processor.process,
                       self.processor.process_many, self.cross_stream_batch)
        finally:
            torch.set_num_threads(previous_threads)
            log.info("device worker stopped")


def _in_background(adapter: Adapter) -> bool:
    """Whether the adapter's steps run on a step executor (no `finish_pending` after its results)."""
    return isinstance(adapter, StepExecutorClient) and adapter.wants_step_executor


def _release(adapter: Adapter | None) -> None:
    """A closed stream's adapter: its work on the step executor stopped (bounded)."""
    if isinstance(adapter, StepExecutorClient):
        adapter.close()
