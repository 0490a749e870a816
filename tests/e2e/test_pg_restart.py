"""A real `forge-runner run` on the PostgreSQL journal while the server restarts twice
(``pg_ctlcluster ... restart -m immediate``, as a crash of the database): the run says it
waits, reconnects and completes, with nothing lost and nothing sent twice.

Restarting the machine's server drops every connection to it, other tests' too; it needs the
server to be this machine's cluster 15/main (as in CI) and root, and skips otherwise, except
under CI=true.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from runner.journal.open import open_journal
from runner.sandbox.app import RunningSandbox, serve
from tests.e2e.harness import ArrivalWatch, Rehearsal, bulk_sandbox_config, run_id_of
from tests.e2e.test_crash_resume import ACTIONS, ISSUES, _assert_everything_done_once, _rows
from tests.pgdb import can_restart, restart_server

# Every other test's connections drop with the server: never beside other tests (xdist workers).
pytestmark = [pytest.mark.slow, pytest.mark.restarts_postgres]

@pytest.fixture
async def sandbox() -> AsyncIterator[RunningSandbox]:
    async with serve(bulk_sandbox_config(ISSUES), port=0) as running:
        yield running


async def test_two_restarts_mid_run_lose_nothing_and_repeat_nothing(
    tmp_path: Path, sandbox: RunningSandbox, pg_url: str
) -> None:
    """The server restarted at the 300th write arrival, and again 600 arrivals after it is
    back: the run logs that the journal waits and reconnects, exits 0, and every comment exists
    once and every property is set (counted in the sandbox), all 2,000 items done."""
    can_restart()
    rehearsal = Rehearsal.start(tmp_path, sandbox, journal_url=pg_url)
    rows = _rows()
    job = rehearsal.write_job("restart", rows, ACTIONS)
    watch = ArrivalWatch.install(sandbox)
    restarts: list[asyncio.Task[None]] = []
    loop = asyncio.get_running_loop()

    second = asyncio.Event()

    async def twice() -> None:
        await restart_server()
        # The second restart waits for writes that could only happen after the first.
        watch.after(600, second.set)
        await second.wait()
        await restart_server()

    watch.at(300, lambda: restarts.append(loop.create_task(twice())))
    ended = await rehearsal.cli("run", job)
    assert restarts, "the run ended before the first restart"
    if not second.is_set():
        restarts[0].cancel()  # the run ended before the second restart could happen
        pytest.fail(f"the run ended before 600 writes arrived after the first restart:\n"
                    f"{ended.text}")
    await restarts[0]
    print("\n".join(line for line in ended.err.splitlines() if "journal." in line))
    assert ended.code == 0, ended.text
    assert ended.err.count("runner.journal.waiting") >= 2, ended.err
    assert "runner.journal.reconnected" in ended.err
    async with open_journal(pg_url, create=False) as journal:
        run_id = run_id_of(ended)
        items = dict(await journal.states(run_id, [row["legacy_id"] for row in rows]))
    _assert_everything_done_once(rehearsal, items, rows)
