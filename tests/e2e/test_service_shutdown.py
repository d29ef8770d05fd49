"""Shutdown of `m2f-ttt serve` (a real subprocess, real TTT) while a WebSocket stream is open: SIGTERM closes the
stream with a close frame and the service shuts down cleanly. docs/websocket-protocol.md §6 promises close code 1012
(service restart; reason "server shutting down")."""

from __future__ import annotations

import json
import os
import signal
from dataclasses import dataclass

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close
from websockets.sync.client import connect

from server.wire.inbound import pack_frame
from tests.e2e.server_proc import run_service, service_env
from tests.server.svc_helpers import build_tiny_checkpoint, jpeg, rgb_frame

pytestmark = pytest.mark.e2e


@dataclass
class Shutdown:
    close: Close | None  # the close frame the client received (None: the connection just dropped)
    messages: list[dict]  # what the client received between SIGTERM and the close
    returncode: int | None
    log: str


@pytest.fixture(scope="module")
def shutdown(tmp_path_factory: pytest.TempPathFactory) -> Shutdown:
    """Serve, stream a frame, SIGTERM the server while the stream is open; what the client saw."""
    tmp = tmp_path_factory.mktemp("shutdown")
    ckpt = build_tiny_checkpoint(tmp / "ckpt")
    env = service_env(ckpt, tmp, M2F_WORKER_TORCH_THREADS="1")
    with run_service(None, env, tmp / "serve.log") as server:
        with connect(f"{server.ws_url}/v1/streams/ws", open_timeout=30) as ws:
            ws.send(json.dumps({"type": "start", "policy": "block"}))
            assert json.loads(ws.recv(timeout=60))["type"] == "started"
            ws.send(pack_frame(jpeg(rgb_frame(80)), frame_id=0))
            assert json.loads(ws.recv(timeout=60))["type"] == "result"  # the stream is live
            os.killpg(server.proc.pid, signal.SIGTERM)
            messages = []
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    messages.append(json.loads(ws.recv(timeout=60)))  # timeout: a hang guard only
        returncode = server.proc.wait(60)
        return Shutdown(closed.value.rcvd, messages, returncode, server.log_tail(60))


def test_sigterm_closes_an_open_stream_with_a_close_frame_and_shuts_down_cleanly(shutdown: Shutdown) -> None:
    assert shutdown.close is not None, f"no close frame: the connection was dropped\n{shutdown.log}"
    assert shutdown.messages == [] or all(m["type"] in {"result", "error"} for m in shutdown.messages)
    # uvicorn finishes its graceful shutdown, then re-raises the signal: killed by SIGTERM, after the app stopped
    assert shutdown.returncode in (0, -signal.SIGTERM), shutdown.log
    assert "Application shutdown complete" in shutdown.log and "service stopped" in shutdown.log, shutdown.log


def test_sigterm_closes_an_open_stream_with_the_documented_1012(shutdown: Shutdown) -> None:
    """docs/websocket-protocol.md: a shutdown closes open streams with 1012 (service restart)."""
    assert shutdown.close is not None
    assert shutdown.close.code == 1012, shutdown.close
