"""A started WebSocket stream whose client goes silent is closed after `ws_idle_timeout_s` and frees its slot."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.server.svc_helpers import make_client
from tests.server.test_api_ws import close_code, start


@pytest.mark.timeout(60)
def test_silent_client_is_closed_and_frees_its_slot(tmp_path: Path, tiny_checkpoint: Path) -> None:
    with make_client(tmp_path, tiny_checkpoint, streams_idle_timeout_s=0.3, streams_max=1) as client:
        with client.websocket_connect("/v1/streams/ws") as ws:
            start(ws)
            msg = ws.receive_json()  # nothing sent: the server gives up on us
            assert msg["type"] == "error" and msg["code"] == "idle_timeout", msg
            assert close_code(ws) == 1008
        with client.websocket_connect("/v1/streams/ws") as ws:  # the only slot is free again
            assert start(ws)["type"] == "started"
