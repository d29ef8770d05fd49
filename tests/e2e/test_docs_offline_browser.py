"""End to end: `/docs` (Swagger UI) and `/redoc` render in headless Chromium with every other host unreachable.

Every request to a host other than 127.0.0.1 is aborted (`page.route`), as on an air-gapped or edge host; the test
asserts that Swagger UI has drawn the operations (`.opblock`) and ReDoc its API sections, and that nothing was
requested from another host, except ReDoc's decorative "API docs by Redocly" logo: the bundle hard-codes its URL
and hides the image when it cannot load, so an air-gapped page simply shows no logo.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.server.svc_helpers import build_tiny_checkpoint, running_service

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"  # hidden by ReDoc when unreachable (onError)


def chromium_path() -> str:
    """The first Chromium-family browser on PATH; fails the test with what to install when none is."""
    for name in BROWSERS:
        if found := shutil.which(name):
            return found
    pytest.fail(f"none of {', '.join(BROWSERS)} is on PATH (apt-get install chromium)")


def test_docs_render_without_network(tmp_path: Path) -> None:
    from playwright.sync_api import Route, sync_playwright

    blocked: list[str] = []

    def only_loopback(route: Route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort("internetdisconnected")

    with running_service(tmp_path, build_tiny_checkpoint(tmp_path / "ckpt")) as server, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page()
            page.route("**/*", only_loopback)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))

            page.goto(f"{server.url}/docs", timeout=30_000)
            page.wait_for_selector(".opblock", timeout=30_000)
            operations = page.locator(".opblock").count()
            assert operations >= 10, f"Swagger UI drew {operations} operations"
            assert page.locator(".opblock-summary-path", has_text="/v1/jobs").count() >= 1
            assert blocked == [], f"/docs asked other hosts for {blocked}"

            page.goto(f"{server.url}/redoc", timeout=30_000)
            page.wait_for_selector("[data-section-id^='operation/']", timeout=30_000)
            assert page.locator("[data-section-id^='operation/']").count() >= 10
        finally:
            browser.close()
    assert set(blocked) <= {REDOC_LOGO}, f"/redoc asked other hosts for {blocked}"
    assert errors == [], errors
