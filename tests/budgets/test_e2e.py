"""Jira's budgets end to end: the engine against the sandbox with Jira's limits scaled down.

A quota 429 pauses every Jira call until the quota's reset while minting goes on; a burst 429
on one endpoint slows that endpoint only. Last, what bench/makespan.py found: a reset rounded to
whole seconds must not move the pacer's exact one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from runner.budgets import ManualClock
from runner.budgets.jira import JiraPacer
from runner.config.configfile import JiraBudgets, load_config
from runner.jira.client import JiraRequest
from runner.jira.ratelimit import parse_rate_limit
from runner.job.jobfile import load_job
from runner.journal import ItemState
from runner.sandbox.app import RunningSandbox
from runner.sandbox.config import Faults, JiraLimits, MintLimit
from runner.sandbox.jira.limits import QUOTA_REASON, iso_time
from runner.sandbox.testing import (
    CLOUD_A,
    CLOUD_B,
    GLOBEX_ACTIVE,
    StartSandbox,
    make_sandbox_config,
    pattern_account,
    write_runner_config,
)
from tests.engine.fairness_harness import SHORT_JIRA_RETRY, Event, Events, run_engine, write_job

ROOMY: dict[str, Any] = {"burst_get_post": 10_000, "burst_put_delete": 10_000,
                         "per_issue_2s": 10_000, "per_issue_30s": 10_000}
TOKEN_TTL_S = 3600  # the sandbox environment's default token lifetime
CONCURRENCY = 4

USER_PROPERTY = """
[[actions]]
type = "user.property.set"
key = "sync"
value = { n = "{n}" }
"""


async def spend_the_quota(sb: RunningSandbox) -> None:
    """Spend what is left of the app's quota the way another run of the app would: calls on
    globex as one of its users until Jira refuses one."""
    token = sb.world.issue_user_token(CLOUD_B, GLOBEX_ACTIVE[0], "dev", TOKEN_TTL_S)
    url = sb.jira_base(CLOUD_B) + "/rest/api/3/myself"
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        while True:
            async with http.get(url) as response:
                await response.read()
                if response.status == 429:
                    return


async def test_a_quota_429_pauses_jira_calls_until_the_reset_and_minting_goes_on(
    tmp_path: Path, start_sandbox: StartSandbox
) -> None:
    """Another client spends the app's quota mid-run: from the runner's first quota 429 until
    the reset the sandbox sees none of its calls (but those already on their way), mints keep
    arriving at the gateway meanwhile, and every item is done, one mint per user."""
    window = 3.0
    limits = JiraLimits(quota_points=60, quota_window_s=window, **ROOMY)
    config = dataclasses.replace(make_sandbox_config(), jira_limits=limits,
                                 mint_limit=MintLimit(limit=10, window_s=1.0))
    users = [pattern_account(n) for n in range(40)]
    going = asyncio.Event()

    def hook(event: Event) -> None:
        if event.name == "item.done" and len(events.named("item.done")) >= 5:
            going.set()

    events = Events(hook=hook)
    async with start_sandbox(config) as sb:
        sb.world.jira_arrivals = []
        extra = f"[jira_budgets]\nquota_points = 60\nquota_window_s = {window}\n"
        cfg = load_config(write_runner_config(
            tmp_path, sb, mint_limit=10, mint_window_s=1.0, concurrency=CONCURRENCY,
            extra=extra + SHORT_JIRA_RETRY.format(wait=0.05)))
        rows = [{"account_id": a, "n": str(i)} for i, a in enumerate(users)]
        job = load_job(write_job(tmp_path, rows, USER_PROPERTY), cfg)
        spent_from = 0.0

        async def other_client() -> None:
            nonlocal spent_from
            await going.wait()
            # Spend it early in a window, so the pause to the reset is long enough to see.
            now = time.time()
            await asyncio.sleep(math.ceil(now / window) * window - now + 0.05)
            spent_from = time.time()
            await spend_the_quota(sb)

        async with asyncio.TaskGroup() as tg:
            tg.create_task(other_client())
            result = await run_engine(tmp_path, cfg, job, events)
        arrivals = sb.world.jira_arrivals
        tokens = list(sb.world.user_tokens.values())

    limited = events.named("jira.rate_limited", reason=QUOTA_REASON)
    assert limited, "the runner met the spent quota"
    seen = limited[0].at  # the runner has its first quota 429 in hand
    reset = math.floor(seen / window) * window + window
    assert spent_from <= seen < reset - 2.0
    ours = [a.at for a in arrivals if a.cloud_id == CLOUD_A]
    # Calls already on their way when the 429 came back (at most one per other worker) still
    # arrive, at once; after them nothing, until the reset.
    on_their_way = [t for t in ours if seen < t < seen + 0.5]
    assert len(on_their_way) <= CONCURRENCY - 1
    assert [t for t in ours if seen + 0.5 <= t < reset] == []
    assert len(limited) <= CONCURRENCY
    minted = [t.expires_at - TOKEN_TTL_S for t in tokens if t.cloud_id == CLOUD_A]
    assert [m for m in minted if seen < m < reset], "mints went on during the pause"
    assert any(t >= reset for t in ours), "calls went on after the reset"
    assert result.counts[ItemState.DONE] == len(users)
    assert sb.world.mints_by_user == {(CLOUD_A, a): 1 for a in users}


MYSELF_THEN_PROPERTY = """
[[actions]]
type = "myself"
""" + USER_PROPERTY

PROPERTY_ROUTE = "PUT /rest/api/3/user/properties/{propertyKey}"


async def test_a_burst_429_slows_that_endpoint_only(
    tmp_path: Path, start_sandbox: StartSandbox
) -> None:
    """Other apps on the tenant leave 20 PUTs a second per endpoint, not the 50 the runner
    assumes: the burst 429s name acme's user-property PUT alone, only that key is paused, a few
    429s teach it the rate (not one per call), and while it is paused globex's calls to the same
    endpoint go on; acme's GET is never held back."""
    limits = JiraLimits(burst_get_post=1000, burst_put_delete=20, per_issue_2s=10_000,
                        per_issue_30s=10_000)
    # globex answers slowly, so its calls stay under the tenant's rate and run all along.
    faults = Faults(latency_ms_min=200, latency_ms_max=200, only_cloud_ids=(CLOUD_B,))
    config = dataclasses.replace(make_sandbox_config(), jira_limits=limits, faults=faults,
                                 mint_limit=MintLimit(limit=6000, window_s=60.0))
    rows = [{"account_id": pattern_account(n), "n": str(n), "site": "acme"} for n in range(60)]
    rows += [{"account_id": pattern_account(n), "n": str(n), "site": "globex"}
             for n in range(100, 120)]
    events = Events()
    async with start_sandbox(config) as sb:
        sb.world.jira_arrivals = []
        cfg = load_config(write_runner_config(tmp_path, sb, concurrency=8, mint_limit=6000))
        job = load_job(write_job(tmp_path, rows, MYSELF_THEN_PROPERTY,
                                 sites=("acme", "globex")), cfg)
        with capture_logs() as logs:
            result = await run_engine(tmp_path, cfg, job, events)
        refused = list(sb.world.rate_limits)
        arrivals = list(sb.world.jira_arrivals)

    key = f"burst:acme:{PROPERTY_ROUTE}"
    assert refused, "the runner met the tenant's smaller burst budget"
    assert {(e.reason, e.scope) for e in refused} == {("jira-burst-based",
                                                       f"{CLOUD_A} {PROPERTY_ROUTE}")}
    assert len(refused) <= 6
    assert {e.fields["scope"] for e in events.named("jira.rate_limited")} == {key}
    assert {e.fields["scope"] for e in events.named("pause")} == {key}
    cuts = [e for e in logs if e["event"] == "runner.budgets.burst_cut"]
    assert cuts and {e["scope"] for e in cuts} == {key}
    assert all(e["rate"] <= 25 for e in cuts)  # halved from the 50 a second it assumed
    # From the first 429 (Retry-After: 1) acme's PUTs stop for a second, but for those already
    # on their way; globex's PUTs to the same endpoint go on meanwhile.
    first = refused[0].at
    puts = [(a.at, a.cloud_id) for a in arrivals if a.route == PROPERTY_ROUTE]
    assert [t for t, cloud in puts if cloud == CLOUD_A and first + 0.2 <= t < first + 1.0] == []
    assert [t for t, cloud in puts if cloud == CLOUD_B and first + 0.2 <= t < first + 1.0]
    assert result.counts[ItemState.DONE] == 2 * len(rows)


def test_a_rounded_reset_leaves_the_exact_window_alone() -> None:
    """RateLimit's t (whole seconds, rounded up) near the end of a window names the reset
    we already know, a fraction of a second late: the pacer keeps its exact reset, so it paces
    what is left to the real reset (not a second past it) and rolls on time; an exact
    X-RateLimit-Reset that is later still wins."""
    window, start = 8.0, 100_000 * 8.0
    clock = ManualClock(start)
    pacer = JiraPacer(JiraBudgets(quota_points=170, quota_window_s=window), clock=clock)
    request = JiraRequest("GET", "/rest/api/3/myself", "/rest/api/3/myself")
    clock.advance(6.6)  # 1.4 s left: t reads 2
    headers = {"RateLimit": '"global-app-quota";r=30;t=2'}
    pacer.observe("acme", request, 200, parse_rate_limit(headers, clock.now()))
    assert pacer.quota.reset_at == start + window
    late = start + window + 0.4
    exact = {"X-RateLimit-Limit": "170", "X-RateLimit-Remaining": "30",
             "X-RateLimit-Reset": iso_time(late)}
    pacer.observe("acme", request, 200, parse_rate_limit(exact, clock.now()))
    assert pacer.quota.reset_at == pytest.approx(late, abs=1e-3)
