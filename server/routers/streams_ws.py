"""`WS /v1/streams/ws`: a client streams frames and gets one JSON result per processed frame.

Protocol: docs/websocket-protocol.md. One handler task reads the socket (frames, controls) and one sender task
writes everything (results are encoded there, off the event loop), so outgoing messages keep the worker's order.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import logging
import time
from typing import Any, Sequence

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from server.auth import presented_key, websocket_principal
from server.ws_auth import START_TIMEOUT_S, close_unauthorized
from server.logging_setup import kv
from server.wire.inbound import (
    CLOSE_GOING_AWAY,
    CLOSE_INTERNAL,
    CLOSE_INVALID_PAYLOAD,
    CLOSE_NORMAL,
    CLOSE_POLICY,
    CLOSE_SERVICE_RESTART,
    CLOSE_TRY_AGAIN,
    CLOSE_UNSUPPORTED,
    CONTROL_TYPES,
    ProtocolError,
    RestoreMessage,
    SetTaskMessage,
    StartMessage,
    close_reason,
    encodings_for,
    parse_frame,
    parse_text,
)
from server.wire.outbound import close_with_error, error_message, outgoing_message
from server.deps import MetricsDep, ModelDep, SettingsDep, WorkerDep
from server.metrics import Metrics
from server.origin import SameOrigin
from server.settings import Settings
from server.streaming import LoopForwarder, put_frame
from server.worker.admission import QuotaError
from server.events import ControlReply, SessionClosed
from server.worker import CapacityError, DeviceWorker, FrameItem, StreamSession
from server.worker.stream_session import QUEUE_SIZE

log = logging.getLogger(__name__)
router = APIRouter(tags=["streams"], dependencies=[SameOrigin])
SENDER_DRAIN_S = 30.0


def _validation_text(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'message'}: {e['msg']}" for e in exc.errors())


async def _receive_start(websocket: WebSocket) -> StartMessage:
    try:
        msg = await asyncio.wait_for(websocket.receive(), START_TIMEOUT_S)
    except asyncio.TimeoutError:
        raise ProtocolError(CLOSE_POLICY, "start_timeout", f"no start message within {START_TIMEOUT_S:g} s") from None
    if msg["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(msg.get("code", 1000))
    if msg.get("text") is None:
        raise ProtocolError(
            CLOSE_UNSUPPORTED, "start_expected", 'the first message must be a text {"type": "start"} message'
        )
    data = parse_text(msg["text"])
    if data.get("type") != "start":
        raise ProtocolError(
            CLOSE_UNSUPPORTED, "start_expected", f'the first message must be "start", got {data["type"]!r}'
        )
    try:
        return StartMessage.model_validate(data)
    except ValidationError as exc:
        raise ProtocolError(
            CLOSE_INVALID_PAYLOAD, "bad_start", f"invalid start message: {_validation_text(exc)}"
        ) from None


@router.websocket("/v1/streams/ws")
async def stream_ws(
    websocket: WebSocket, settings: SettingsDep, worker: WorkerDep, model: ModelDep, metrics: MetricsDep
) -> None:
    """Live stream over one WebSocket (see docs/websocket-protocol.md)."""
    await websocket.accept()
    if presented_key(websocket.headers, websocket.query_params) and websocket_principal(websocket) is None:
        await close_unauthorized(websocket)  # a wrong handshake key: refuse before reading anything
        return
    try:
        start = await _receive_start(websocket)
    except ProtocolError as exc:
        await close_with_error(websocket, exc.close_code, exc.code, exc.message)
        return
    except WebSocketDisconnect:
        return
    principal = websocket_principal(websocket, start.api_key)
    if principal is None:
        await close_unauthorized(websocket)
        return

    fwd = LoopForwarder(asyncio.get_running_loop())
    session = StreamSession(
        source="ws",
        task=start.task,
        method=start.method or settings.ttt.method,
        preset=start.preset or settings.ttt.preset,
        policy=start.policy,
        queue_size=start.queue_size or QUEUE_SIZE,
        deliver=fwd,
        encodings=encodings_for(start.task, start.encodings),
        on_space=fwd.notify_space,
        owner=principal.key_id,
        instance_filter=settings.instance_filter(start.score_threshold, start.min_area),
        ttt_view_every=start.ttt_view,
    )
    try:
        await asyncio.wrap_future(worker.open_session(session))
    except CapacityError as exc:
        await close_with_error(websocket, CLOSE_TRY_AGAIN, "quota" if isinstance(exc, QuotaError) else "capacity", str(exc))
        return
    except ValueError as exc:
        await close_with_error(websocket, CLOSE_INVALID_PAYLOAD, "bad_start", str(exc))
        return
    except RuntimeError as exc:
        await close_with_error(websocket, CLOSE_INTERNAL, "unavailable", str(exc))
        return

    model_cfg = model.cfg
    await websocket.send_text(
        json.dumps(
            {
                "type": "started",
                "protocol": 1,
                **session.stats(),
                "encodings": list(session.encodings),
                "class_names": model_cfg.class_names,
                "thing_class_ids": model_cfg.thing_class_ids,
                "max_frame_bytes": int(settings.streams.max_frame_bytes),
            }
        )
    )
    handler = _StreamHandler(websocket, worker, settings, session, fwd, model_cfg.class_names, metrics)
    await handler.run()


class _StreamHandler:
    """Reads frames/controls of one started stream; a sender task writes results in order."""

    def __init__(
        self,
        websocket: WebSocket,
        worker: DeviceWorker,
        settings: Settings,
        session: StreamSession,
        fwd: LoopForwarder,
        class_names: Sequence[str],
        metrics: Metrics,
    ) -> None:
        self.ws = websocket
        self.worker = worker
        self.settings = settings
        self.session = session
        self.fwd = fwd
        self.seq = itertools.count()
        self.class_names = class_names
        self.metrics = metrics
        self.last_sent = time.monotonic()  # when the server last sent something (idle timeout)

    async def run(self) -> None:
        sender = asyncio.create_task(self._send_loop())
        close_code, reason, graceful = CLOSE_NORMAL, "stream closed", False
        try:
            while True:
                msg = await self._receive()
                if msg["type"] == "websocket.disconnect":
                    close_code = None
                    break
                if msg.get("bytes") is not None:
                    if not await self._on_frame(msg["bytes"]):
                        close_code, reason = CLOSE_GOING_AWAY, "stream closed by the server"
                        break
                elif msg.get("text") is not None and await self._on_text(msg["text"]):
                    graceful = True
                    break
        except ProtocolError as exc:
            log.info("protocol violation", extra=kv(stream=self.session.id, code=exc.code, error=exc.message))
            self.fwd(error_message(exc.code, exc.message, stream_id=self.session.id))
            close_code, reason = exc.close_code, exc.message
        except WebSocketDisconnect:
            close_code = None
        finally:
            if not graceful:
                self.worker.close_session(self.session, reason if close_code else "client disconnected")
            try:
                await asyncio.wait_for(sender, SENDER_DRAIN_S if close_code else 1.0)
            except (asyncio.TimeoutError, asyncio.CancelledError, Exception) as exc:  # noqa: BLE001
                if not isinstance(exc, (asyncio.TimeoutError, asyncio.CancelledError)):
                    log.warning("result sender failed", extra=kv(stream=self.session.id, error=repr(exc)))
                sender.cancel()
            if graceful:
                self.worker.close_session(self.session, "client stopped")
            if close_code is not None:
                try:
                    await self.ws.close(close_code, reason=close_reason(reason))
                except (RuntimeError, WebSocketDisconnect):
                    pass

    async def _receive(self) -> dict:
        """The client's next message; ProtocolError (1008 `idle_timeout`) after `ws_idle_timeout_s` in which the
        client sent nothing and the server sent nothing either (a client waiting for slow results is not idle), so
        a frozen client does not hold its stream slot."""
        limit = self.settings.streams.idle_timeout_s
        receiving = asyncio.ensure_future(self.ws.receive())
        while True:
            done, _ = await asyncio.wait({receiving}, timeout=limit)
            if done:
                return receiving.result()
            if time.monotonic() - self.last_sent >= limit:
                receiving.cancel()
                raise ProtocolError(CLOSE_POLICY, "idle_timeout", f"no message from the client for {limit:g} s")

    async def _on_frame(self, data: bytes) -> bool:
        header, image = parse_frame(data, int(self.settings.streams.max_frame_bytes))
        frame_id = header.get("frame_id")
        item = FrameItem(
            frame_id=next(self.seq) if frame_id is None else frame_id, data=image, capture_ts=header.get("capture_ts")
        )
        return await put_frame(self.worker, self.session, item, self.fwd.space)

    async def _on_text(self, text: str) -> bool:
        """Handle a control message; True when the client asked to stop."""
        data = parse_text(text)
        kind = data["type"]
        model = CONTROL_TYPES.get(kind)
        if model is None:
            hint = "the stream is already started" if kind == "start" else f"unknown message type {kind!r}"
            self.fwd(error_message("bad_message", hint, stream_id=self.session.id))
            return False
        try:
            msg = model.model_validate(data)
        except ValidationError as exc:
            self.fwd(
                error_message(
                    "bad_message", f"invalid {kind} message: {_validation_text(exc)}", stream_id=self.session.id
                )
            )
            return False
        s, w = self.session, self.worker
        if kind == "stats":
            self.fwd({"type": "stats", **s.stats()})
        elif kind == "reset":
            w.reset(s)
        elif kind == "checkpoint":
            w.checkpoint(s)
        elif isinstance(msg, RestoreMessage):
            w.restore(s, msg.checkpoint_id)
        elif isinstance(msg, SetTaskMessage):
            w.control(s, "set_task", lambda sess: _set_task(sess, msg))
        elif kind == "stop":
            w.control(s, "stop", lambda sess: {"processed": sess.processed, "dropped": sess.dropped})
            return True
        return False

    async def _send_loop(self) -> None:
        """Write every delivery in order until the session closes or the client stops."""
        while True:
            obj: Any = await self.fwd.queue.get()
            try:
                msg = await outgoing_message(obj, self.class_names, self.metrics, self.worker.model.cfg.class_colors)
            except Exception as exc:  # noqa: BLE001 - an encoder bug must not silence the stream
                log.exception("result encoding failed", extra=kv(stream=self.session.id))
                msg = error_message("encode_failed", f"{type(exc).__name__}: {exc}", getattr(obj, "frame_id", None))
            if msg is not None:
                await self.ws.send_text(json.dumps(msg))
                self.last_sent = time.monotonic()
            if isinstance(obj, ControlReply) and obj.name == "stop":
                return
            if isinstance(obj, SessionClosed):
                if obj.reason == "server shutting down":
                    await self.ws.close(CLOSE_SERVICE_RESTART, reason=obj.reason)
                return


def _set_task(session: StreamSession, msg: SetTaskMessage) -> dict:
    session.task = msg.task
    session.encodings = encodings_for(msg.task, msg.encodings)
    asked = {k: v for k in ("score_threshold", "min_area") if (v := getattr(msg, k)) is not None}
    session.instance_filter = dataclasses.replace(session.instance_filter, **asked)
    kept = dataclasses.asdict(session.instance_filter)
    return {"task": session.task, "encodings": list(session.encodings), **kept}
