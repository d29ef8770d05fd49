"""One WebSocket stream (`/v1/streams/ws`): send a source's frames with back-pressure, iterate its results.

A sender thread sends at most `max_in_flight` frames that have no answer yet (a result, a per-frame error, or —
with the `latest` policy — a drop the server counted); the iterating thread reads the socket and frees a slot per
answer. After the last frame the sender sends `stop`; iteration ends at the server's `stop` reply.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
from contextlib import ExitStack
from collections.abc import Callable, Iterator
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from .errors import ClientError, SourceError
from .sources import Source, iter_images, source_name
from .wire import pack_frame
from .ws_errors import error_from_close, error_from_message, is_fatal

log = logging.getLogger(__name__)
ErrorHook = Callable[[dict], None]


class Stream:
    """Frames of `source` in, result dicts out. Use as a context manager (or call `open()` / `close()`); iterate
    for the `result` messages in frame order. After `open()`: `started` (the server's `started` reply); after the
    iteration: `summary` (its `stop` reply: processed, dropped). Per-frame `error` messages (bad_image,
    adapter_error, ...) go to `errors` (and `on_error`); fatal ones raise a `ClientError` subclass."""

    def __init__(self, ws_url: str, source: Source, start: dict[str, Any], *, max_in_flight: int = 2,
                 max_width: int | None = None, max_frames: int | None = None, fps: float | None = None,
                 timeout_s: float = 300.0, open_timeout_s: float = 30.0, on_error: ErrorHook | None = None) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.ws_url, self.source, self.start_msg = ws_url, source, start
        self.max_in_flight, self.fps = max_in_flight, fps
        self.timeout_s, self.open_timeout_s, self.on_error = timeout_s, open_timeout_s, on_error
        self._images = iter_images(source, max_width, max_frames)
        self.started: dict[str, Any] | None = None
        self.summary: dict[str, Any] | None = None
        self.errors: list[dict[str, Any]] = []
        self.replies: list[dict[str, Any]] = []  # other server messages (stats, ...)
        self.sent = 0
        self._slots = threading.Semaphore(max_in_flight)
        self._closing = threading.Event()
        self._send_error: BaseException | None = None
        self._dropped = 0
        self._ws: ClientConnection | None = None
        self._sender: threading.Thread | None = None
        self._stack = ExitStack()

    def open(self) -> "Stream":
        """Read the first frame (a bad source fails here, before connecting), connect, send `start`, wait for
        `started`, start sending. Raises `SourceError`, `AuthError`, `CapacityError` or `ClientError`."""
        first = next(self._images, None)
        if first is None:
            raise SourceError("empty", f"no frames could be read from {source_name(self.source)}")
        try:
            msg = self._handshake()
        except BaseException:
            self.close()
            raise
        if msg.get("type") != "started":
            self.close()
            raise error_from_message(msg) if msg.get("type") == "error" else ClientError("protocol", str(msg))
        self.started = msg
        self._sender = threading.Thread(target=self._send_all, args=(first,), name="m2f-client-sender", daemon=True)
        self._sender.start()
        return self

    def _handshake(self) -> dict[str, Any]:
        self._ws = self._stack.enter_context(
            connect(f"{self.ws_url}/v1/streams/ws", max_size=None, open_timeout=self.open_timeout_s)
        )
        try:
            self._ws.send(json.dumps(self.start_msg))
        except ConnectionClosed:
            pass  # refused at once: the server's error message is still readable
        return self._recv(self.open_timeout_s)

    def __enter__(self) -> "Stream":
        return self.open() if self._ws is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if self._ws is None:
            self.open()
        try:
            yield from self._results()
        finally:
            self.close()

    def close(self) -> None:
        """Stop sending and close the socket (idempotent)."""
        self._closing.set()
        for _ in range(self.max_in_flight):
            self._slots.release()  # wake a sender waiting for a slot
        self._stack.close()  # closes the socket
        if self._sender is not None and self._sender is not threading.current_thread():
            self._sender.join(10)

    def _results(self) -> Iterator[dict[str, Any]]:
        while self.summary is None:
            msg = self._recv(self.timeout_s)
            kind = msg.get("type")
            if kind == "result":
                self._answered(1 + max(0, int(msg.get("dropped", 0)) - self._dropped))
                self._dropped = max(self._dropped, int(msg.get("dropped", 0)))
                yield msg
            elif kind == "error":
                if is_fatal(msg):
                    raise error_from_message(msg)
                self.errors.append(msg)
                if "frame_id" in msg:
                    self._answered(1)
                (self.on_error or _log_error)(msg)
            elif kind == "stop":
                self.summary = msg
            else:
                self.replies.append(msg)
        if self._send_error is not None:
            raise self._send_error

    def _answered(self, frames: int) -> None:
        for _ in range(frames):
            self._slots.release()

    def _recv(self, timeout_s: float) -> dict[str, Any]:
        assert self._ws is not None
        try:
            return json.loads(self._ws.recv(timeout=timeout_s))
        except ConnectionClosed as exc:
            raise error_from_close(exc) from None
        except TimeoutError:
            raise ClientError("timeout", f"no message from the server for {timeout_s:g} s") from None

    def _send_all(self, first: bytes) -> None:
        """Sender thread: every frame, each after a free slot (and paced at `fps`), then `stop`."""
        assert self._ws is not None
        try:
            for index, image in enumerate(itertools.chain([first], self._images)):
                self._slots.acquire()
                if self._closing.is_set():
                    return
                self._ws.send(pack_frame(image, index))
                self.sent += 1
                if self.fps and self._closing.wait(1.0 / self.fps):
                    return
        except ConnectionClosed:
            return
        except BaseException as exc:  # noqa: BLE001 - raised by the iterating thread after `stop`
            self._send_error = exc
        try:
            self._ws.send(json.dumps({"type": "stop"}))
        except ConnectionClosed:
            pass


def _log_error(msg: dict) -> None:
    log.warning("server error %s on frame %s: %s", msg.get("code"), msg.get("frame_id"), msg.get("message"))
