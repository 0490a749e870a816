"""``worker --metrics-port``: /metrics and the status page of real `forge-runner worker`
processes on the machine's PostgreSQL and the sandbox show the journal's workers and lanes."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import psycopg
import pytest
from playwright.async_api import Page, expect
from prometheus_client.parser import text_string_to_metric_families

from runner.sandbox.app import RunningSandbox, serve
from runner.sandbox.config import Faults
from tests.e2e.harness import (
    ArrivalWatch,
    Process,
    Rehearsal,
    account,
    bulk_sandbox_config,
    run_id_of,
)
from tests.monitor.browser import browser, page, screenshot_path

__all__ = ["browser", "page"]  # the browser fixtures

pytestmark = pytest.mark.slow

USERS = 8  # as many as a worker's concurrency: the first worker holds every lane
ROWS = 480
LEASE_S = 16.0
LIMIT_S = 90.0  # an upper bound for what the test waits for, not a measure of speed
ACTIONS = """\
[[actions]]
type = "comment.add"
issue = "{issue}"
body = "Migrated {legacy_id}"

[[actions]]
type = "issue.property.set"
issue = "{issue}"
key = "legacy-{legacy_id}"
value = { id = "{legacy_id}" }
"""


@pytest.fixture
async def sandbox() -> AsyncIterator[RunningSandbox]:
    # Each Jira call takes 30 ms: the lanes last while the test reads the pages.
    faults = Faults(latency_ms_min=30.0, latency_ms_max=30.0)
    async with serve(bulk_sandbox_config(20, faults=faults), port=0) as running:
        yield running


@pytest.fixture
def rehearsal(tmp_path: Path, sandbox: RunningSandbox, pg_url: str) -> Rehearsal:
    rehearsal = Rehearsal.start(tmp_path, sandbox, journal_url=pg_url, concurrency=USERS)
    text = rehearsal.config_path.read_text()
    # A lease long enough to read every page before it lapses; a request fits in half of it.
    text = text.replace("request_timeout_s = 30.0", "request_timeout_s = 2.0")
    rehearsal.config_path.write_text(text + f"\n[cluster]\nlease_s = {LEASE_S}\npoll_s = 0.2\n")
    return rehearsal


async def _until(what: str, check: Callable[[], Awaitable[bool]]) -> None:
    """Wait until ``check()`` holds: another process's state is only seen by reading it."""
    deadline = time.monotonic() + LIMIT_S
    while not await check():
        assert time.monotonic() < deadline, f"not within {LIMIT_S} s: {what}"
        await asyncio.sleep(0.1)


async def _logged(process: Process, text: str) -> str:
    async def found() -> bool:
        return text in process.err_path.read_text()

    await _until(f"{text!r} in the worker's log", found)
    return process.err_path.read_text()


async def _url(process: Process) -> str:
    printed = await _logged(process, "status page")
    found = re.search(r"metrics: (http://127\.0\.0\.1:\d+)/metrics, status page", printed)
    assert found, printed
    return found.group(1)


async def _get(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(url) as answer:
        assert answer.status == 200, url
        return await answer.text()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition, by (name, sorted labels)."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _journal(url: str, run_id: str) -> tuple[int, dict[tuple[str, str], int], int]:
    """(workers alive, lanes held by owner host-pid prefix, lanes taken over) as the journal
    holds them, read with SQL of the test's own."""
    with psycopg.connect(url, autocommit=True) as conn:
        alive = conn.execute(
            "SELECT count(*) FROM workers WHERE stopped_at IS NULL "
            "AND heartbeat_at > now() - make_interval(secs => %s)", (2 * LEASE_S,)).fetchone()
        held = conn.execute(
            "SELECT w.host, w.pid, count(*) FROM lanes l JOIN workers w ON w.id = l.owner "
            "WHERE l.run_id = %s AND l.state = 'held' GROUP BY w.host, w.pid",
            (run_id,)).fetchall()
        taken = conn.execute("SELECT count(*) FROM lanes WHERE run_id = %s AND fence > 1",
                             (run_id,)).fetchone()
    assert alive is not None and taken is not None
    return int(alive[0]), {(str(h), str(p)): int(n) for h, p, n in held}, int(taken[0])


def _run_state(url: str, run_id: str) -> str:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT state FROM runs WHERE run_id = %s", (run_id,)).fetchone()
    assert row is not None
    return str(row[0])


async def test_workers_metrics_and_page_show_the_journal_s_workers_and_lanes(
    rehearsal: Rehearsal, pg_url: str, page: Page,
) -> None:
    """A worker holding every lane of a run is SIGSTOPped; a second worker's /metrics (parsed
    by prometheus_client) counts 2 workers alive and the first one's lanes as held by another
    process, as the journal does, and its status page (in chromium) lists the stopped worker
    with its host, pid and lanes, holding no token. Once the lease lapses the second worker
    takes every lane over and finishes the run: its lane_takeovers_total is the journal's
    count of lanes under a later fence; woken, the first counts them in lanes_lost_total."""
    rows = [{"legacy_id": f"LEG-{n:04d}", "account_id": account(n % USERS),
             "issue": f"MIG-{n % 20 + 1}"} for n in range(ROWS)]
    job = rehearsal.write_job("watched", rows, ACTIONS)
    detached = await rehearsal.cli("run", job, "--detach")
    assert detached.code == 0, detached.text
    run_id = run_id_of(detached)
    watch = ArrivalWatch.install(rehearsal.sandbox)
    stopped = asyncio.Event()
    holder = await rehearsal.spawn("worker", "--metrics-port", "0")
    other: Process | None = None

    def stop() -> None:
        holder.signal(signal.SIGSTOP)
        stopped.set()

    watch.after(40, stop)
    try:
        holder_url = await _url(holder)
        await stopped.wait()
        other = await rehearsal.spawn("worker", "--metrics-port", "0")
        other_url = await _url(other)
        await _logged(other, "runner.worker.started")
        await _while_stopped(rehearsal, pg_url, page, run_id, holder, other_url)

        async def finished() -> bool:
            return _run_state(pg_url, run_id) == "finished"

        await _until("the second worker finishes the run", finished)
        after = _samples(await _get(f"{other_url}/metrics"))
        _, held, taken = _journal(pg_url, run_id)
        assert taken == USERS and held == {}
        assert after[("forge_runner_lane_takeovers_total", ())] == taken
        assert after[("forge_runner_lanes_lost_total", ())] == 0
        assert after[("forge_runner_runs_open", ())] == 0

        holder.signal(signal.SIGCONT)
        await _logged(holder, "runner.lane.lost")

        async def all_lost() -> bool:
            found = _samples(await _get(f"{holder_url}/metrics"))
            return found[("forge_runner_lanes_lost_total", ())] >= USERS

        await _until("the woken worker counts its lanes lost", all_lost)
        woken = _samples(await _get(f"{holder_url}/metrics"))
        assert woken[("forge_runner_lanes_lost_total", ())] == USERS
        assert woken[("forge_runner_lane_takeovers_total", ())] == 0
        for worker in (holder, other):
            worker.signal(signal.SIGTERM)
            assert (await worker.wait()).code == 0
    finally:  # a failure must not leave a stopped process behind
        for left in (holder, other):
            if left is not None:
                left.signal(signal.SIGCONT)
                left.signal(signal.SIGKILL)


async def _while_stopped(rehearsal: Rehearsal, pg_url: str, page: Page, run_id: str,
                         holder: Process, other_url: str) -> None:
    metrics = await _get(f"{other_url}/metrics")
    alive, held, _ = _journal(pg_url, run_id)
    found = _samples(metrics)
    host = next(iter(held))[0] if held else ""
    assert held == {(host, str(holder.pid)): USERS}, held
    assert alive == 2
    assert found[("forge_runner_workers_alive", ())] == alive
    assert found[("forge_runner_runs_open", ())] == 1
    assert found[("forge_runner_lanes_held", (("holder", "other_processes"),
                                              ("run", run_id)))] == USERS
    assert found[("forge_runner_lanes_held", (("holder", "this_process"),
                                              ("run", run_id)))] == 0
    # No worker ID is a label: the label values are the run and the two holders only.
    for name, labels in found:
        if name.startswith(("forge_runner_workers", "forge_runner_lane")):
            assert {k for k, _ in labels} <= {"run", "holder"}, (name, labels)

    status = json.loads(await _get(f"{other_url}/status.json"))
    assert status["process"]["kind"] == "worker"
    pids = {w["pid"]: w["lanes_held"] for w in status["cluster"]["workers"]}
    assert pids[holder.pid] == USERS and len(pids) == 2

    await page.goto(f"{other_url}/status")
    section = page.locator("section", has=page.get_by_role("heading", name="Workers and lanes"))
    worker_row = section.locator("table").first.locator("tbody tr", has_text=str(holder.pid))
    await expect(worker_row).to_be_visible()
    cells = worker_row.locator("td")
    await expect(cells.nth(0)).to_have_text(host)
    await expect(cells.nth(2)).to_have_text(re.compile(r"^\d+\.\d s ago$"))
    await expect(cells.nth(3)).to_have_text(str(USERS))
    await expect(section.get_by_role("columnheader", name="heartbeat")).to_be_visible()
    lanes = section.locator(f'.lanes[data-run="{run_id}"]')
    await expect(lanes.locator("caption")).to_contain_text(f"Lanes of {run_id}")
    held_row = lanes.locator("tbody tr", has_text=str(holder.pid))
    await expect(held_row.locator("td").nth(3)).to_have_text(str(USERS))
    await page.screenshot(path=screenshot_path("workers-and-lanes"), full_page=True)

    text = {"/metrics": metrics, "/status.json": json.dumps(status),
            "/status": await _get(f"{other_url}/status"),
            "page as shown": await section.inner_text()}
    secrets = [*rehearsal.sandbox.world.user_tokens, rehearsal.system_token,
               rehearsal.system_token.rsplit(".", 1)[1]]
    assert len(secrets) > 3
    for name, body in text.items():
        leaked = [n for n, s in enumerate(secrets) if s in body or s[:16] in body]
        assert not leaked, f"token #{leaked[0]} in {name}"
