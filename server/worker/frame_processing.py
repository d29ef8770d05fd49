"""How a worker lane turns queued frames into results: decode, the adapter's step (one stream, or several in one
batched call: ttt/cross_stream.py), post-processing, delivery, then a pipelined stream's deferred step (a stream
with the asynchronous schedule has none: its steps run on the worker's step executor). A bad frame or a failing
step gives that frame a `FrameError`; the stream and the others go on.

`FrameProcessor` is a collaborator of `DeviceWorker`: it is given the decoder, metrics and admission it uses.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Hashable

import torch

from mask2former_ttt.ttt.cross_stream import batch_key, finish_pending_many, step_many
from mask2former_ttt.ttt.frame_step import finish_frame, step_frame
from mask2former_ttt.ttt.frames import working_size
from server.logging_setup import kv
from server.metrics import Metrics
from server.worker.admission import Admission
from server.worker.decode_ahead import DecodeAhead
from server.worker.imaging import ImageDecodeError, result_size
from server.events import FrameError, FrameResult
from server.worker.stream_session import FrameItem, StreamSession

log = logging.getLogger(__name__)

Decoded = tuple[StreamSession, FrameItem, Any, float, torch.Tensor]  # session, item, RGB array, decode s, (3, H, W)


class FrameProcessor:
    """A lane's frames -> `FrameResult` / `FrameError` delivered to their streams (`StreamSession.send`), with the
    counters, memory observations (`admission`) and metrics of each processed frame."""

    def __init__(self, decoder: DecodeAhead, metrics: Metrics, admission: Admission, max_result_side: int) -> None:
        self.decoder = decoder
        self.metrics = metrics
        self.admission = admission
        self.max_result_side = max_result_side

    def process(self, session: StreamSession, item: FrameItem) -> None:
        """Decode -> `step_frame` -> FrameResult (or FrameError: the stream goes on, the others are untouched)."""
        start = time.perf_counter()
        decoded = self._decode(session, item)
        if decoded is not None:
            self._step_one(session, item, *decoded, start)

    def process_many(self, work: list[tuple[StreamSession, FrameItem]]) -> None:
        """Several streams' frames (one each): those whose adapters share a `batch_key` go through batched calls
        (ttt/cross_stream.py: predictions in one call, the pipelined steps after the results in one call), the rest
        one by one as `process` does. A failing batched call fails that call's frames; the streams go on."""
        start = time.perf_counter()
        groups: dict[Hashable, list[Decoded]] = {}
        for session, item in work:
            decoded = self._decode(session, item)
            if decoded is None:
                continue
            rgb, decode_s, frame = decoded
            cfg = session.adapter.model.cfg
            hw = working_size(rgb.shape[0], rgb.shape[1], cfg.image_size, cfg.max_size)
            key = batch_key(session.adapter, hw)
            groups.setdefault(key if key is not None else ("serial", session.id), []).append(
                (session, item, rgb, decode_s, frame))
        for members in groups.values():
            if len(members) == 1:
                session, item, rgb, decode_s, frame = members[0]
                self._step_one(session, item, rgb, decode_s, frame, start)
            else:
                self._step_batch(members, start)

    def _step_one(self, session: StreamSession, item: FrameItem, rgb: Any, decode_s: float, frame: torch.Tensor,
                  start: float) -> None:
        try:
            step = step_frame(session.adapter, frame, session.task, self._out_size(rgb), session.instance_filter,
                              session.tracker)
        except Exception as exc:  # noqa: BLE001 - one stream's failure must not affect the others
            self._step_failed(session, item, exc)
            return
        self._send(session, item, rgb, decode_s, frame, step, start)
        if not session.steps_in_background:
            self._finish_pending(session, item)

    def _step_batch(self, members: list[Decoded],
                    start: float) -> None:
        adapters = [m[0].adapter for m in members]
        try:
            logits = step_many(adapters, [m[4] for m in members])
        except Exception as exc:  # noqa: BLE001 - fails this call's frames only
            for session, item, *_ in members:
                self._step_failed(session, item, exc)
            return
        for (session, item, rgb, decode_s, frame), result in zip(members, logits):
            try:
                step = finish_frame(session.adapter, result, frame, session.task, self._out_size(rgb),
                                    session.instance_filter, session.tracker)
            except Exception as exc:  # noqa: BLE001 - one stream's failure must not affect the others
                self._step_failed(session, item, exc)
                continue
            self._send(session, item, rgb, decode_s, frame, step, start)
        try:
            finish_pending_many(adapters)
        except Exception as exc:  # noqa: BLE001 - the batched deferred steps fail; the streams go on
            log.exception("batched deferred TTT step failed", extra=kv(streams=len(members)))
            for session, item, *_ in members:
                why = f"TTT step after frame {item.frame_id!r}: {type(exc).__name__}: {exc}"
                self._frame_failed(session, item, "adapter_error", why)

    def _decode(self, session: StreamSession, item: FrameItem) -> tuple[Any, float, torch.Tensor] | None:
        """(RGB (H, W, 3) uint8 array, decode seconds, (3, H, W) uint8 tensor view), or None after a bad_image
        error was sent."""
        try:
            rgb, decode_s = self.decoder.result(item)
        except ImageDecodeError as exc:
            self._frame_failed(session, item, "bad_image", f"frame {item.frame_id!r}: {exc}")
            return None
        return rgb, decode_s, torch.from_numpy(rgb).permute(2, 0, 1)

    def _out_size(self, rgb: Any) -> tuple[int, int]:
        return result_size(rgb.shape[0], rgb.shape[1], self.max_result_side)

    def _step_failed(self, session: StreamSession, item: FrameItem, exc: Exception) -> None:
        log.error("adapter step failed", extra=kv(stream=session.id, frame=item.frame_id), exc_info=exc)
        self._frame_failed(session, item, "adapter_error", f"frame {item.frame_id!r}: {type(exc).__name__}: {exc}")

    def _send(self, session: StreamSession, item: FrameItem, rgb: Any, decode_s: float, frame: torch.Tensor,
              step: Any, start: float) -> None:
        step.timings_s = {"queue": start - item.enqueued, "decode": item.decode_s + decode_s, **step.timings_s}
        self._account(session, step.ttt_record())
        self.metrics.observe_timings(step.timings_s)
        session.send(
            FrameResult(
                stream_id=session.id,
                frame_id=item.frame_id,
                index=session.processed - 1,
                task=session.task,
                image=rgb,
                step=step,
                encodings=session.encodings,
                received=item.received,
                capture_ts=item.capture_ts,
                pts_s=item.pts_s,
                dropped=session.dropped,
                memory_bytes=session.memory_bytes,
                ttt_view=session.ttt_view(frame),
            ),
        )

    def _finish_pending(self, session: StreamSession, item: FrameItem) -> None:
        """A pipelined stream's TTT step for the frame just sent: off the latency path, before its next frame."""
        try:
            session.adapter.finish_pending()
        except Exception as exc:  # noqa: BLE001 - one stream's failure must not affect the others
            log.exception("deferred TTT step failed", extra=kv(stream=session.id, frame=item.frame_id))
            why = f"TTT step after frame {item.frame_id!r}: {type(exc).__name__}: {exc}"
            self._frame_failed(session, item, "adapter_error", why)

    def _account(self, session: StreamSession, ttt: dict) -> None:
        """Counters, memory and metrics after a processed frame."""
        session.processed += 1
        session.last_loss = ttt["loss"]
        session.rollbacks = ttt["rollbacks"]
        self.admission.observe(session, int(session.adapter.memory_bytes()))
        if ttt["rolled_back"]:
            self.metrics.rollbacks.labels(session.source).inc()
        m = self.metrics
        for counter, field in ((m.steps_skipped, "steps_skipped"), (m.step_errors, "step_errors")):
            if ttt.get(field):
                counter.labels(session.source).inc(ttt[field])
        self.metrics.frames.labels(session.source).inc()
        self.metrics.stream_memory.labels(session.id).set(session.memory_bytes)

    def _frame_failed(self, session: StreamSession, item: FrameItem, code: str, message: str) -> None:
        session.errors += 1
        self.metrics.frame_errors.labels(session.source).inc()
        session.send(FrameError(session.id, item.frame_id, code, message))
