"""The TTT methods the WebSocket accepts (named by its refusal of an unknown one), the methods `GET /v1/info` lists
and the methods docs/websocket-protocol.md names are one list."""

from __future__ import annotations

import json
import re
from pathlib import Path

from fastapi.testclient import TestClient

from server.app import create_app
from tests.server.svc_helpers import make_settings

PROTOCOL_DOC = Path(__file__).resolve().parents[2] / "docs" / "websocket-protocol.md"


def _refused_choices(client: TestClient) -> list[str]:
    """The methods named by the WebSocket's refusal of an unknown method (real adapter factory)."""
    with client.websocket_connect("/v1/streams/ws") as ws:
        ws.send_text(json.dumps({"type": "start", "method": "no_such_method"}))
        msg = ws.receive_json()
    assert (msg["type"], msg["code"]) == ("error", "bad_start"), msg
    listed = re.search(r"choose one of \[([^\]]*)\]", msg["message"])
    assert listed is not None, msg["message"]
    return re.findall(r"'([a-z_0-9]+)'", listed.group(1))


def _documented_methods() -> list[str]:
    """The method names of the `method` row of the start message's table (before its parenthesised note)."""
    row = next(line for line in PROTOCOL_DOC.read_text(encoding="utf-8").splitlines() if line.startswith("| `method` |"))
    cell = row.split("|")[2].split("(")[0]
    return re.findall(r"`([a-z_0-9]+)`", cell)


def test_ws_refusal_info_and_docs_name_the_same_methods(tmp_path: Path, tiny_checkpoint: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path, tiny_checkpoint))) as client:
        refused = _refused_choices(client)
        info = client.get("/v1/info").json()["methods"]
    documented = _documented_methods()
    assert "online" in info and "main_only" in info
    assert refused == info, (refused, info)
    assert sorted(documented) == sorted(info), (documented, info)


def test_every_listed_method_opens_a_stream(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """No method `/v1/info` lists is refused by the WebSocket (the list is what the service serves)."""
    with TestClient(create_app(make_settings(tmp_path, tiny_checkpoint))) as client:
        for method in client.get("/v1/info").json()["methods"]:
            with client.websocket_connect("/v1/streams/ws") as ws:
                ws.send_text(json.dumps({"type": "start", "method": method, "preset": "fast"}))
                msg = ws.receive_json()
                assert msg["type"] == "started", (method, msg)
                ws.send_text(json.dumps({"type": "stop"}))
                assert ws.receive_json()["type"] == "stop"
