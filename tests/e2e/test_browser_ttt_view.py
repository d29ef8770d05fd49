"""End to end: the webcam page shows the TTT view and a legend, in a real headless Chromium against a real
`m2f-ttt serve` on 127.0.0.1 running the bundled synthetic-street demo model.

Chromium's fake camera plays a synthetic street video (this project's renderer, written as y4m with PyAV's
converter, so no ffmpeg command is needed). The page asks for the TTT view every 2nd result (`?ttt_view=2`); the
test waits on DOM conditions only (no sleeps): 3 views drawn, 12 points on the ℓ_s curve, a legend row present.
It then checks the legend's class names against `GET /v1/classes`, that the reconstruction canvas holds an image,
that the curve is drawn, that every instance label reads "class #id score", and that the demo-model notice links
docs/real-weights.md; the screenshot goes to `test-artifacts/page-ttt-view.png`. docs/screenshots/page-ttt-view.png
is that file reduced to 128 colours (`Image.open(p).convert("RGB").quantize(128, dither=Image.Dither.NONE)`, PIL)
to stay small; the test does not write into docs/.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import av
import httpx
import numpy as np
import pytest

from model.checkpoint import bundled_model_dir
from tests.e2e.server_proc import REPO, run_service, service_env
from mask2former_ttt.outputs.palette import thing_shades
from tests.e2e.test_browser import BROWSERS, OVERLAY_PIXELS_JS, find_chromium

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

BUDGET_S = 100.0
LABEL = re.compile(r"^(?P<name>.+) #\d+ \d\.\d\d$")
CANVAS_JS = """(id) => {
  const c = document.getElementById(id);
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let sum = 0, sq = 0, opaque = 0;
  for (let i = 0; i < d.length; i += 4) {
    const v = (d[i] + d[i + 1] + d[i + 2]) / 3; sum += v; sq += v * v; if (d[i + 3] > 0) opaque++;
  }
  const n = d.length / 4, mean = sum / n;
  return {width: c.width, height: c.height, opaque, std: Math.sqrt(Math.max(0, sq / n - mean * mean))};
}"""
READY_JS = """() => {
  const s = window.m2f && window.m2f.stats;
  return !!s && s.tttViews >= 3 && s.curvePoints >= 12 && s.rendered >= 3
    && document.querySelectorAll('#legend li.present').length >= 1;
}"""


def shade_of(class_colors: list[list[int]], segment: dict) -> tuple[int, ...]:
    """The colour the page must draw a panoptic segment in: its class colour, a thing in its id's shade of it."""
    base = np.array([class_colors[segment["category_id"]]], np.uint8)
    return tuple(int(v) for v in (thing_shades(base, np.array([segment["id"]]))[0] if segment["isthing"] else base[0]))


def street_y4m(path: Path, frames: int = 45, size: tuple[int, int] = (180, 320), fps: int = 15) -> Path:
    """A synthetic street video (the bundled model's training domain) as a 4:2:0 y4m Chromium can loop."""
    from mask2former_ttt.data.video import SyntheticVideo, make_video_spec

    video = SyntheticVideo(make_video_spec("browser", "val", "clean", 3, frames, size=size))
    h, w = size
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for t in range(frames):
            yuv = av.VideoFrame.from_ndarray(video.frame(t).image, format="rgb24").reformat(format="yuv420p")
            out.write(b"FRAME\n" + yuv.to_ndarray().tobytes())  # (3H/2, W): Y, then U, then V planes
    return path


def test_page_shows_the_ttt_view_the_loss_curve_and_a_legend(tmp_path: Path) -> None:
    chromium = find_chromium()
    if chromium is None:
        pytest.fail(f"a Chromium is required, none of {', '.join(BROWSERS)} is on PATH (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    t0 = time.monotonic()
    remaining = lambda: max(1.0, BUDGET_S - (time.monotonic() - t0))  # noqa: E731
    camera = street_y4m(tmp_path / "street.y4m")
    env = service_env(bundled_model_dir(), tmp_path, M2F_WORKER_TORCH_THREADS="1")
    with run_service(None, env, tmp_path / "server.log", ready_timeout_s=40) as server:
        classes = httpx.get(f"{server.url}/v1/classes", timeout=10).json()
        guide = httpx.get(f"{server.url}/guides/real-weights.md", timeout=10)
        assert guide.status_code == 200 and "M2F_MODEL_PATH" in guide.text
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                str(tmp_path / "chromium-profile"), executable_path=chromium, headless=True,
                viewport={"width": 1100, "height": 900},
                args=["--headless", "--no-sandbox", "--use-fake-ui-for-media-stream",
                      "--use-fake-device-for-media-stream", f"--use-file-for-fake-video-capture={camera}",
                      "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                      "--disable-component-update", "--disable-sync"],
            )
            page_errors: list[str] = []
            try:
                page = context.new_page()
                page.on("pageerror", lambda exc: page_errors.append(str(exc)))
                page.goto(f"{server.url}/?autostart=1&task=panoptic&method=online&ttt_view=2",
                          timeout=remaining() * 1000)
                try:
                    page.wait_for_function(READY_JS, timeout=remaining() * 1000, polling=200)
                except Exception as exc:
                    stats = page.evaluate("window.m2f && window.m2f.stats")
                    raise AssertionError(f"no TTT view / curve / legend: stats={stats} errors={page_errors} "
                                         f"status={page.text_content('#status')!r}\n{server.log_tail(20)}") from exc
                stats = page.evaluate("window.m2f.stats")
                assert stats["errors"] == 0 and not stats["lastError"] and page_errors == [], (stats, page_errors)

                names = page.eval_on_selector_all("#legend li .name", "els => els.map(e => e.textContent)")
                assert names == classes["class_names"] and "road" in names and "car" in names
                swatches = page.eval_on_selector_all("#legend li .swatch", "els => els.map(e => e.style.background)")
                assert swatches == [f"rgb({r}, {g}, {b})" for r, g, b in classes["class_colors"]]

                recon = page.evaluate(CANVAS_JS, "ttt-recon")
                masked = page.evaluate(CANVAS_JS, "ttt-masked")
                assert (recon["width"], recon["height"]) == (masked["width"], masked["height"]) == (224, 128), recon
                assert recon["opaque"] == recon["width"] * recon["height"] and recon["std"] > 2, recon  # an image
                curve = page.evaluate(CANVAS_JS, "ttt-curve")
                assert stats["curvePoints"] >= 2 and curve["opaque"] > 0, (stats, curve)
                assert "→" in page.text_content("#ttt-caption")

                # every painted pixel is its segment's legend colour (stuff) or its id's shade of it (things), the
                # rule the server's overlays follow (palette.thing_shades); translucent pixels read back within 3
                pixels = page.evaluate(OVERLAY_PIXELS_JS)
                assert pixels["painted"] > 0
                expected = [shade_of(classes["class_colors"], s) for s in page.evaluate("window.m2f.stats.renderedSegments")]
                for color in (tuple(int(v) for v in c.split(",")) for c in pixels["colors"]):
                    assert any(max(abs(a - b) for a, b in zip(color, e)) <= 3 for e in expected), (color, expected)

                for text in stats["labels"]:  # things: "class #id score", a thing class of the model
                    match = LABEL.match(text)
                    assert match and classes["class_names"].index(match["name"]) in classes["thing_class_ids"], text
                assert page.is_visible("#demo-note")
                assert page.get_attribute("#real-weights", "href") == "/guides/real-weights.md"

                artifacts = REPO / "test-artifacts"
                artifacts.mkdir(exist_ok=True)
                page.screenshot(path=str(artifacts / "page-ttt-view.png"), full_page=True)
            finally:
                context.close()
