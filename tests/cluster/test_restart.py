"""Three workers on one run while the machine's PostgreSQL restarts twice (as a crash of the
database): nothing lost, nothing repeated, and no lane taken over, since each outage is
shorter than the lease."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from runner.sandbox.app import RunningSandbox, serve
from tests.cluster.test_workers import ACTIONS, ISSUES, _assert_once_and_in_order, _journal
from tests.e2e.harness import ArrivalWatch, Rehearsal, account, bulk_sandbox_config, run_id_of
from tests.pgdb import can_restart, restart_server

pytestmark = [pytest.mark.slow, pytest.mark.restarts_postgres]

USERS = 150
ROWS = 900
LEASE_S = 15.0  # several times an outage (~2.5 s) plus the send margin (2 s)


@pytest.fixture
async def sandbox() -> AsyncIterator[RunningSandbox]:
    async with serve(bulk_sandbox_config(ISSUES), port=0) as running:
        yield running


async def test_two_restarts_with_three_workers_lose_nothing_and_take_no_lane_over(
    tmp_path: Path, sandbox: RunningSandbox, pg_url: str,
) -> None:
    """`run` and two `worker`s, the server restarted at the 200th write and again 300 writes
    after it is back: `run` exits 0, every comment made once and in each user's order, every
    lane still under its first fence, and each process said it waited for the journal."""
    can_restart()
    rehearsal = Rehearsal.start(tmp_path, sandbox, journal_url=pg_url, concurrency=8)
    text = rehearsal.config_path.read_text().replace("request_timeout_s = 30.0",
                                                     "request_timeout_s = 2.0")
    rehearsal.config_path.write_text(text + f"\n[cluster]\nlease_s = {LEASE_S}\npoll_s = 0.2\n")
    rows = [{"legacy_id": f"LEG-{n:04d}", "account_id": account(n % USERS),
             "issue": f"MIG-{n % ISSUES + 1}"} for n in range(ROWS)]
    job = rehearsal.write_job("restarts", rows, ACTIONS)
    watch = ArrivalWatch.install(sandbox)
    loop = asyncio.get_running_loop()
    restarts: list[asyncio.Task[None]] = []
    second = asyncio.Event()

    async def twice() -> None:
        await restart_server()
        watch.after(300, second.set)
        await second.wait()
        await restart_server()

    starter = await rehearsal.spawn("run", job)
    workers = [await rehearsal.spawn("worker") for _ in range(2)]
    watch.at(200, lambda: restarts.append(loop.create_task(twice())))
    ended = await starter.wait()
    assert restarts, "the run ended before the first restart"
    assert second.is_set(), f"the run ended before the second restart:\n{ended.text}"
    await restarts[0]
    assert ended.code == 0, ended.text
    for worker in workers:
        worker.signal(signal.SIGTERM)
        done = await worker.wait()
        assert done.code == 0, done.text
    assert "runner.journal.waiting" in ended.err or "runner.budgets.waiting" in ended.err
    states, fences = _journal(pg_url, run_id_of(ended))
    _assert_once_and_in_order(rehearsal, rows, states)
    assert set(fences.values()) == {1}, "a lane was taken over during an outage"
