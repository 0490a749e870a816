"""A real browser for the status page tests: Debian's chromium, headless, driven by Playwright.

Never Playwright's own browser download: ``executable_path`` is the system's chromium. Without
it the tests skip, except under CI=true, where they fail (`.ci/run` installs it).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

CHROMIUM = Path("/usr/bin/chromium")


def require_chromium() -> None:
    if CHROMIUM.exists():
        return
    message = f"{CHROMIUM} is missing: apt-get install -y chromium (the browser tests need it)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    require_chromium()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A laptop-sized page (1366 x 768)."""
    context = await browser.new_context(viewport={"width": 1366, "height": 768})
    try:
        yield await context.new_page()
    finally:
        await context.close()


def screenshot_path(name: str) -> Path:
    """Where a test keeps its screenshot: $TMPDIR/forge-runner-status/NAME.png."""
    folder = Path(os.environ.get("TMPDIR") or tempfile.gettempdir()) / "forge-runner-status"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{name}.png"
