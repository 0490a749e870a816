"""Over loopback against the sandbox, with Jira's limits scaled down: calls paced by JiraPacer
through the executor get no 429 at all, while the same calls sent unpaced do."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Iterable

import aiohttp

from runner.budgets.jira import JiraPacer
from runner.config.configfile import JiraBudgets, SiteConfig
from runner.jira.client import JiraClient, JiraRequest
from runner.jira.executor import CallExecutor, Done
from runner.jira.ratelimit import Scope
from runner.sandbox.app import RunningSandbox
from runner.sandbox.testing import CLOUD_A
from tests.conftest import StartSandbox
from tests.jira.harness import (
    ACME_USER,
    API,
    FAST,
    ISSUE_T,
    PROPERTY_T,
    Recorder,
    WorldTokens,
    sandbox_config,
    site,
)

# Small enough that a burst of the calls below breaks every limit, big enough that paced
# they finish in a few seconds: 60 points a 2 s window, 20 GET/s and 10 PUT/s per key, and
# 6 writes per 2 s per issue.
LIMITS = {"quota_points": 60, "quota_window_s": 2.0, "burst_get_post": 20,
          "burst_put_delete": 10, "per_issue_2s": 6, "per_issue_30s": 1000}
BUDGETS = JiraBudgets(**LIMITS)  # type: ignore[arg-type]
WORKERS = 16


def calls() -> list[JiraRequest]:
    """30 issue reads (2 points each: the request and the issue read) and 18 property writes
    over three issues: 78 points, more than one window holds."""
    reads = [JiraRequest("GET", f"{API}/issue/MIG-{1 + n % 3}", ISSUE_T, cost=2)
             for n in range(30)]
    writes = [JiraRequest("PUT", f"{API}/issue/MIG-{1 + n % 3}/properties/p{n}", PROPERTY_T,
                          json={"n": n}, issue=f"MIG-{1 + n % 3}")
              for n in range(18)]
    return [r for pair in zip(reads, writes, strict=False) for r in pair] + reads[len(writes):]


async def run_paced(sb: RunningSandbox, acme: SiteConfig, requests: Iterable[JiraRequest],
                    pacer: JiraPacer) -> list[object]:
    """Every request through a paced executor, from a pool of workers."""
    observer = Recorder()
    results: list[object] = []
    queue = list(requests)
    async with aiohttp.ClientSession() as session:
        executor = CallExecutor(JiraClient(session, timeout_s=5.0),
                                {"dev": WorldTokens(sb.world)}, pacer, FAST, observer,
                                rng=random.Random(3))

        async def worker() -> None:
            while queue:
                request = queue.pop(0)
                results.append(await executor.execute(acme, ACME_USER, request))

        async with asyncio.TaskGroup() as tg:
            for _ in range(WORKERS):
                tg.create_task(worker())
    return results


async def send_unpaced(sb: RunningSandbox, acme: SiteConfig,
                       requests: Iterable[JiraRequest]) -> Counter[int]:
    """Every request sent at once, once, the way a plain ``gather`` would: statuses."""
    token = WorldTokens(sb.world)
    statuses: Counter[int] = Counter()
    async with aiohttp.ClientSession() as session:
        client = JiraClient(session, timeout_s=5.0)
        user_token = await token.token_for(acme, ACME_USER)

        async def one(request: JiraRequest) -> None:
            statuses[(await client.send(acme, user_token, request)).status] += 1

        async with asyncio.TaskGroup() as tg:
            for request in requests:
                tg.create_task(one(request))
    return statuses


async def test_paced_calls_get_no_429_where_unpaced_ones_do(start_sandbox: StartSandbox) -> None:
    """The same 48 calls: unpaced, the sandbox refuses some (burst, per-issue or quota);
    paced by JiraPacer through the executor, every call is done and the sandbox sent no 429."""
    async with start_sandbox(sandbox_config(**LIMITS)) as sb:
        acme = site("acme", CLOUD_A, sb.jira_base(CLOUD_A))
        statuses = await send_unpaced(sb, acme, calls())
        assert statuses[429] > 0, statuses
        assert sb.world.rate_limits

    async with start_sandbox(sandbox_config(**LIMITS)) as sb:
        acme = site("acme", CLOUD_A, sb.jira_base(CLOUD_A))
        results = await run_paced(sb, acme, calls(), JiraPacer(BUDGETS))
        assert len(results) == 48
        assert all(isinstance(r, Done) and r.deferrals == 0 for r in results), results
        assert sb.world.rate_limits == []


async def test_a_pause_set_while_waiting_for_the_budgets_returns_the_permit(
    start_sandbox: StartSandbox,
) -> None:
    """A call waiting on the budgets when a 429 pauses its site gives its permit back, waits out
    the pause, and is charged to the quota once, not twice."""
    async with start_sandbox(sandbox_config()) as sb:
        sb.world.jira_arrivals = []
        acme = site("acme", CLOUD_A, sb.jira_base(CLOUD_A))
        observer = Recorder()
        budgets = JiraBudgets(quota_points=1_000_000)
        pacer = JiraPacer(budgets, observer=observer, pause_after_s=0.1)
        request = JiraRequest("GET", f"{API}/issue/MIG-1", ISSUE_T, cost=2)
        now = time.time()
        pacer.quota.exhausted(now + 0.3, now)
        async with aiohttp.ClientSession() as session:
            executor = CallExecutor(JiraClient(session, timeout_s=5.0),
                                    {"dev": WorldTokens(sb.world)}, pacer, FAST, observer)
            async with asyncio.TaskGroup() as tg:
                tg.create_task(executor.execute(acme, ACME_USER, request))
                await observer.seen("pause")  # the call is waiting for the quota
                until = time.time() + 0.6
                pacer.pauses.block(Scope.of_site("acme"), until, "test")
        arrived = [a.at for a in sb.world.jira_arrivals]
        assert len(arrived) == 1 and arrived[0] >= until
        assert pacer.quota.remaining(time.time()) == budgets.quota_points - 2
