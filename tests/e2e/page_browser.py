"""A headless Chromium page on a test service (Playwright), for the page's panel tests."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from tests.e2e.test_browser import BROWSERS, find_chromium

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@contextmanager
def chromium_page(profile: Path, url: str, timeout_s: float) -> Iterator[tuple[object, list[str]]]:
    """(page opened at `url`, the page's uncaught errors); fails the test at once without a Chromium."""
    chromium = find_chromium()
    if chromium is None:
        pytest.fail(f"a Chromium is required, none of {', '.join(BROWSERS)} is on PATH (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=chromium, headless=True, viewport={"width": 1100, "height": 1000},
            accept_downloads=True, args=CHROMIUM_ARGS,
        )
        errors: list[str] = []
        try:
            page = context.new_page()
            page.set_default_timeout(timeout_s * 1000)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(url)
            yield page, errors
        finally:
            context.close()
