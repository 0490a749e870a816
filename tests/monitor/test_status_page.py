"""The status page in a real browser (chromium) while serve runs a migration and a nightly sync:
what it shows changes as the runs go (progress, a pause that comes and ends, a failure with its
row), without a reload."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from runner.sandbox.testing import StartSandbox
from tests.monitor.browser import screenshot_path
from tests.monitor.world import FAILED_ROW, MIGRATE, NIGHTLY, SKIPPED_ROW, served

pytestmark = pytest.mark.slow

WAIT_MS = 60_000  # an upper bound for a change to show, not a measure of speed


async def test_the_page_follows_a_migration_and_a_nightly_run(
        tmp_path: Path, start_sandbox: StartSandbox, page: Page) -> None:
    """With the page open (no reload): the migration appears, its progress moves, a mint pause
    appears with its reason and countdown and then ends, the 404 lists its row, the run ends
    finished; then the nightly sync appears and ends with every item done."""
    async with served(tmp_path, start_sandbox, rows=40, latency_ms=40.0) as world:
        await page.goto(world.status_url)
        await expect(page.get_by_role("heading", name="forge-runner status")).to_be_visible()
        await expect(page.locator("#process")).to_have_text(re.compile("forge-runner serve"))
        await expect(page.locator("#runs")).to_have_text("no run yet")

        await world.forge.trigger(MIGRATE.key, "acme")
        run = page.locator("article.run", has_text="migration@")
        await expect(run).to_be_visible(timeout=WAIT_MS)
        progress = run.locator(".progress-text")
        await expect(progress).to_have_text(re.compile(r"^[1-9]\d* of 42 items$"),
                                            timeout=WAIT_MS)
        first = await progress.text_content()
        assert first is not None
        await expect(progress).not_to_have_text(first, timeout=WAIT_MS)  # it moves
        await expect(run.locator(".bound")).to_have_text(re.compile(r"^\d+\.\d s$"))

        pause = page.locator("#pauses tbody tr", has_text="mint:dev")
        await expect(pause).to_be_visible(timeout=WAIT_MS)
        await expect(pause).to_contain_text("rate limited (retry_after)")
        await expect(pause.locator("td").nth(2)).to_have_text(re.compile(r"^\d+ s$"))
        await page.screenshot(path=screenshot_path("run-with-pause"), full_page=True)
        budgets = page.locator("section", has=page.get_by_role("heading", name="Budgets"))
        await expect(budgets).to_contain_text("quota:global")
        await budgets.screenshot(path=screenshot_path("budgets"))
        await expect(pause).to_have_count(0, timeout=WAIT_MS)  # and it ends

        failure = run.locator("tbody tr", has_text="http-404")
        await expect(failure).to_contain_text(FAILED_ROW, timeout=WAIT_MS)
        skipped = run.locator("tbody tr", has_text="deactivated")
        await expect(skipped).to_contain_text(SKIPPED_ROW, timeout=WAIT_MS)
        await expect(run.locator(".state")).to_have_text("finished", timeout=WAIT_MS)
        await expect(progress).to_have_text("42 of 42 items")

        await world.forge.trigger(NIGHTLY.key, "acme")
        nightly = page.locator("article.run", has_text="nightly-sync@")
        await expect(nightly.locator(".state")).to_have_text("finished", timeout=WAIT_MS)
        await expect(nightly.locator(".progress-text")).to_have_text("4 of 4 items")
        # Newest first: the nightly run above the migration.
        await expect(page.locator("article.run").first).to_contain_text("nightly-sync@")

        await expect(budgets.locator("table").first).to_contain_text("dev")
        # Between runs the quota is shown as the last run left it (its window goes on).
        await expect(budgets).to_contain_text("quota:global")
        sites = page.locator("#sites")
        await expect(sites).to_contain_text(re.compile(r"issue \d+"))
        installations = page.locator("#installations")
        await expect(installations).to_contain_text(world.forge.installation_id("acme"))
        # On SQLite the workers section says what sharing runs needs, and lists no worker.
        workers = page.locator("section", has=page.get_by_role("heading", name="Workers and lanes"))
        await expect(workers.locator("#cluster-note")).to_contain_text("PostgreSQL journal")
        await expect(workers.locator("table")).to_have_count(0)
        # The chart is the server's SVG, loaded as an image.
        chart = page.locator("img#chart")
        await expect(chart).to_have_attribute("src", re.compile(r"status/chart\.svg\?t="))
        assert await chart.evaluate("img => img.complete && img.naturalWidth > 0")


async def test_the_page_shows_data_as_text(
        tmp_path: Path, start_sandbox: StartSandbox, page: Page) -> None:
    """A row key holding markup is shown as those characters, not run as HTML."""
    async with served(tmp_path, start_sandbox, rows=4, latency_ms=0.0,
                      failed_row='<img src=x onerror="document.title=1">LEG-9') as world:
        await page.goto(world.status_url)
        await world.forge.trigger(MIGRATE.key, "acme")
        run = page.locator("article.run", has_text="migration@")
        failure = run.locator("tbody tr", has_text="http-404")
        await expect(failure).to_contain_text('<img src=x onerror="document.title=1">LEG-9',
                                              timeout=WAIT_MS)
        assert await run.locator("img").count() == 0
        assert await page.title() == "forge-runner status"
