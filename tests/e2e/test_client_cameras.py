"""End to end: the Python client with a real RTSP camera (GStreamer's RTSP server in a subprocess) and a real
service with API keys: streaming an RTSP URL over the WebSocket API, and following a camera by the service
(`add_camera`, `camera_results` with the key in the socket's first message, `delete_camera`)."""

from __future__ import annotations


import pytest

from mask2former_ttt.client import AuthError, Client
from tests.e2e.conftest_rtsp import rtsp_camera  # noqa: F401  (fixture)
from tests.server.svc_helpers import build_tiny_checkpoint, running_service

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]
KEY = "camera-key"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("client-cams")
    with running_service(root, build_tiny_checkpoint(root / "ckpt"), api_keys=[KEY]) as server:
        yield server


def test_stream_an_rtsp_url_sends_its_frames(service, rtsp_camera) -> None:  # noqa: F811
    with Client(service.url, api_key=KEY) as client:
        stream = client.stream(rtsp_camera.url, preset="fast", max_frames=3, max_width=160)
        results = list(stream)
    assert [r["frame_id"] for r in results] == [0, 1, 2] and (results[0]["width"], results[0]["height"]) == (160, 120)


def test_camera_results_with_the_key_in_the_first_message_until_deleted(service, rtsp_camera) -> None:  # noqa: F811
    with Client(service.url, api_key=KEY) as client:
        camera = client.add_camera(rtsp_camera.url, preset="fast", max_fps=4)
        with pytest.raises(AuthError, match="missing or invalid API key"):
            next(Client(service.url, api_key="wrong-key").camera_results(camera["id"]))
        messages = client.camera_results(camera["id"])
        assert next(messages)["type"] == "subscribed"
        results: list[dict] = []
        for msg in messages:
            results += [msg] if msg["type"] == "result" else []
            if len(results) == 2:
                break
        client.delete_camera(camera["id"])
        rest = list(messages)  # ends at `closed` (close 1000) instead of raising
    assert len(results) == 2 and results[1]["frame_index"] > results[0]["frame_index"]
    assert rest and rest[-1]["type"] == "closed"
