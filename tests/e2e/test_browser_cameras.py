"""End to end: the page's Cameras panel in a real headless Chromium against a real `m2f-ttt serve` on 127.0.0.1
(no API keys: the page's user owns its cameras and sees why they fail).

A camera URL on a loopback port nothing listens on: *Test* says "connection refused"; *Add* lists the camera, which
ends `failed` with the same reason in its row; *Remove* takes it off the page and the service. The screenshot goes
to `test-artifacts/page-cameras.png` (docs/screenshots/page-cameras.png is it reduced to 128 colours).
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest_rtsp import free_port
from tests.e2e.page_browser import chromium_page
from tests.e2e.server_proc import REPO, run_service, service_env
from tests.server.svc_helpers import build_tiny_checkpoint

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
BUDGET_S = 90.0


def test_a_dead_camera_shows_why_and_can_be_removed(tmp_path: Path) -> None:
    t0 = time.monotonic()
    remaining = lambda: max(1.0, BUDGET_S - (time.monotonic() - t0))  # noqa: E731
    env = service_env(build_tiny_checkpoint(tmp_path / "ckpt"), tmp_path, M2F_WORKER_TORCH_THREADS="1",
                      M2F_RTSP_ALLOWED_HOSTS="127.0.0.1", M2F_RTSP_RETRY_FOR_S="1e-6")
    port = free_port()
    refused = f"connection refused by 127.0.0.1:{port}"
    with run_service(None, env, tmp_path / "server.log", ready_timeout_s=40) as server:
        with chromium_page(tmp_path / "profile", f"{server.url}/", remaining()) as (page, errors):
            page.fill("#camera-url", f"rtsp://127.0.0.1:{port}/cam")
            page.click("#camera-test")
            page.wait_for_function(f"document.getElementById('camera-status').textContent.includes({refused!r})")
            assert httpx.get(f"{server.url}/v1/streams", timeout=10).json()["streams"] == []  # a test adds nothing

            page.select_option("#task", "instance")
            page.click("#camera-add")
            row = page.locator("#cameras tr[data-state=failed]")
            try:
                row.wait_for(timeout=remaining() * 1000)
            except Exception as exc:
                raise AssertionError(f"no failed camera row: {page.text_content('#cameras-panel')!r} "
                                     f"errors={errors}\n{server.log_tail(20)}") from exc
            assert refused in row.locator(".reason").text_content()
            assert row.locator("td").nth(1).text_content() == "instance"
            (stream,) = httpx.get(f"{server.url}/v1/streams", timeout=10).json()["streams"]
            assert row.get_attribute("data-id") == stream["id"]
            artifacts = REPO / "test-artifacts"
            artifacts.mkdir(exist_ok=True)
            page.locator("#cameras-panel").screenshot(path=str(artifacts / "page-cameras.png"))

            row.locator("button", has_text="Remove").click()
            page.wait_for_function("document.querySelectorAll('#cameras tr').length === 0")
            assert httpx.get(f"{server.url}/v1/streams", timeout=10).json()["streams"] == []
            assert "removed" in page.text_content("#camera-status")
            assert errors == [], errors
