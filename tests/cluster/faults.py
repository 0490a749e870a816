"""What the fault tests share: the lease, the budgets, the job's size, and the checks.

A fault test (``test_faults*.py``) gets a ``cluster`` (``conftest.py``) with ``BIG`` budgets,
or ``SMALL`` ones by ``@pytest.mark.parametrize("budgets", [SMALL], indirect=True)``; starts a
run with ``started`` (its moment: the N-th comment to arrive, ``seeded``), workers, strikes,
and ends with ``assert_clean(verdict_of(...))``.
"""

from __future__ import annotations

import asyncio
import os
import random

from tests.cluster.checker import Expected, Verdict, check, late_writes, requests_after
from tests.cluster.cluster import Budgets, Cluster, Worker, write_job
from tests.cluster.history import Lane, read_items
from tests.e2e.harness import COMMENT_ROUTE, ArrivalWatch

LEASE_S, REQUEST_TIMEOUT_S = 6.0, 2.0
ISSUES = 200
# The big job binds on the quota: 6,000 points at 50 a second is 120 s (mints: 2,000 at 25 a
# second, 80 s). This machine does about 75 items a second with 3 workers: the quota binds.
BIG = Budgets(mints=250, mint_window_s=10.0, quota=500, quota_window_s=10.0)
# The small one (1,200 items), for the faults that need time rather than size: 40 s.
SMALL = Budgets(mints=200, mint_window_s=10.0, quota=300, quota_window_s=10.0)
RUN_LIMIT_S = 600.0
CUT_S = 90.0


def seeded(low: int, high: int) -> int:
    seed = int(os.environ.get("FORGE_RUNNER_E2E_SEED") or random.SystemRandom().randrange(2**32))
    moment = random.Random(seed).randrange(low, high)
    print(f"moment: comment {moment} (FORGE_RUNNER_E2E_SEED={seed})")
    return moment


def verdict_of(cluster: Cluster, run_id: str, expected: list[Expected]) -> Verdict:
    world = cluster.sandbox.world
    journal = read_items(cluster.pg_url, run_id)
    assert len(journal) == len(expected) and {it.state for it in journal} == {"done"}
    assert list(world.rate_limits) == []
    return check(list(world.jira_arrivals or []), list(world.mint_arrivals or []), expected,
                 journal=journal, claims=cluster.claims, limits=cluster.budgets.limits())


def assert_clean(verdict: Verdict) -> None:
    assert verdict.counts() == dict.fromkeys(verdict.counts(), 0), verdict.counts()


def assert_nothing_after(cluster: Cluster, run_id: str, worker: Worker, held: list[Lane],
                         lease_end: float) -> None:
    """No request from ``worker`` for the users of ``held`` after ``lease_end``; no write of
    theirs accepted under its fences after it."""
    world = cluster.sandbox.world
    # The log knows the worker's requests (by the ID in their User-Agent) at all.
    assert requests_after(world.jira_arrivals or [], world.mint_arrivals or [], worker.id, 0.0)
    accounts = {lane.account_id for lane in held}
    sent = requests_after(world.jira_arrivals or [], world.mint_arrivals or [], worker.id,
                          lease_end, accounts=accounts)
    assert sent == []
    lost = [(lane.run_id, lane.account_id, lane.fence) for lane in held]
    assert late_writes(read_items(cluster.pg_url, run_id), lost, lease_end) == []


async def started(cluster: Cluster, users: int, rows_per_user: int, moment: int
                  ) -> tuple[str, list[Expected], asyncio.Event]:
    """The run loaded and watched; the event is set when the ``moment``-th comment arrives."""
    job, expected = write_job(cluster.folder, "migration", users, rows_per_user, ISSUES)
    run_id = await cluster.start_run(job)
    cluster.watch(run_id)
    watch = ArrivalWatch.install(cluster.sandbox, routes={COMMENT_ROUTE})
    return run_id, expected, watch.event_after(moment)


