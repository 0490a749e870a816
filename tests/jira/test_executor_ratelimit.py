"""Each 429 shape and RateLimit-Reason, over loopback: the limited scope waits out its pause in
the sandbox's own records, other scopes and sites go on, and no 429 spends an attempt."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import replace
from typing import Any

import pytest
from structlog.testing import capture_logs

from runner.jira.executor import Done, Failed
from runner.jira.ratelimit import parse_rate_limit
from runner.sandbox.testing import CLOUD_A, CLOUD_B
from runner.sandbox.world import RateLimitEvent
from tests.jira.harness import (
    API,
    FAST,
    ISSUE_T,
    PROPERTY_T,
    Harness,
    StartSandbox,
    arrivals,
    get_issue,
    harness,
    myself,
    put_property,
    rewriting_proxy,
    sandbox_config,
)

# One attempt only: a 429 that spent an attempt would fail the call instead of deferring it.
ONE_ATTEMPT = replace(FAST, attempts=1)
ISSUE_GET = f"GET {ISSUE_T}"
PROPERTY_PUT = f"PUT {PROPERTY_T}"


async def provoke(
    h: Harness, warm_up: Callable[[], Awaitable[Any]],
    limited: Callable[[], Coroutine[Any, Any, Any]],
    *during: Callable[[], Coroutine[Any, Any, Any]],
) -> RateLimitEvent:
    """Spend a budget one call at a time (so nothing is in flight when Jira refuses), then send
    ``limited`` until refused, and the moment the runner learns of the 429, start ``during``.
    Returns the sandbox's record of the first 429."""
    await warm_up()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(limited())
        await h.observer.seen("jira.rate_limited")
        for call in during:
            tg.create_task(call())
    assert h.sb.world.rate_limits, "the sandbox sent no 429"
    return h.sb.world.rate_limits[0]


def window(first: RateLimitEvent, until: float) -> Callable[[Any], bool]:
    return lambda a: first.at < a.at < until


def all_done(h: Harness) -> None:
    assert h.results and all(isinstance(r, Done) for r in h.results), h.results
    assert all(r.attempts == 1 for r in h.results)


async def test_burst_429_holds_that_endpoint_only(start_sandbox: StartSandbox) -> None:
    """A burst 429 holds (site, endpoint, method) until Retry-After; other endpoints and sites
    go on meanwhile."""
    async with start_sandbox(sandbox_config(burst_get_post=4)) as sb:
        sb.world.jira_arrivals = []
        async with harness(sb, policy=ONE_ATTEMPT) as h:

            async def warm_up() -> None:
                for _ in range(4):
                    await h.run(h.acme, get_issue("MIG-1"))

            first = await provoke(
                h, warm_up, lambda: h.run(h.acme, get_issue("MIG-1")),
                *[lambda k=k: h.run(h.acme, get_issue(k)) for k in ("MIG-2", "MIG-3")],
                *[lambda: h.run(h.acme, myself())] * 2,
                *[lambda: h.run(h.globex, get_issue("GLX-1"))] * 2,
            )
    assert first.reason == "jira-burst-based" and first.retry_after is not None
    ends = first.at + first.retry_after
    held = arrivals(sb.world, CLOUD_A, route=ISSUE_GET, where=lambda a: a.at > first.at)
    assert len(held) == 3 and all(a.at >= ends for a in held)
    assert len(arrivals(sb.world, CLOUD_A, route=f"GET {API}/myself",
                        where=window(first, ends))) == 2
    assert len(arrivals(sb.world, CLOUD_B, where=window(first, ends))) == 2
    all_done(h)
    assert sum(r.deferrals for r in h.results) == len(sb.world.rate_limits) == 1


async def test_per_issue_429_holds_writes_to_that_issue(start_sandbox: StartSandbox) -> None:
    """A per-issue 429 holds writes to that issue only: another issue on the same endpoint and
    another site's writes go on."""
    async with start_sandbox(sandbox_config(per_issue_2s=3)) as sb:
        sb.world.jira_arrivals = []
        async with harness(sb, policy=ONE_ATTEMPT) as h:

            async def warm_up() -> None:
                for n in range(3):
                    await h.run(h.acme, put_property("MIG-1", f"p{n}"))

            first = await provoke(
                h, warm_up, lambda: h.run(h.acme, put_property("MIG-1", "late")),
                lambda: h.run(h.acme, put_property("MIG-1", "held")),
                *[lambda n=n: h.run(h.acme, put_property("MIG-2", f"q{n}")) for n in range(2)],
                *[lambda n=n: h.run(h.globex, put_property("GLX-1", f"g{n}")) for n in range(2)],
            )
    assert first.reason == "jira-per-issue-on-write" and first.retry_after is not None
    ends = first.at + first.retry_after
    held = arrivals(sb.world, CLOUD_A, where=lambda a: a.at > first.at and a.issue == "MIG-1")
    assert len(held) == 2 and all(a.at >= ends for a in held)
    other_issue = arrivals(sb.world, CLOUD_A, route=PROPERTY_PUT,
                           where=lambda a: first.at < a.at < ends and a.issue == "MIG-2")
    assert len(other_issue) == 2
    assert len(arrivals(sb.world, CLOUD_B, where=window(first, ends))) == 2
    all_done(h)


async def test_app_wide_quota_429_holds_every_site(start_sandbox: StartSandbox) -> None:
    """A jira-quota-global-based 429 holds every Jira call of the app, on every site, until the
    quota's reset (the quota is shared by all sites)."""
    async with start_sandbox(sandbox_config(quota_points=3, quota_window_s=1.0)) as sb:
        sb.world.jira_arrivals = []
        async with harness(sb, policy=ONE_ATTEMPT) as h:

            async def until_refused() -> None:
                # Quota windows are aligned to the clock: write until one is spent.
                for n in range(10):
                    result = await h.run(h.acme, put_property(f"MIG-{n % 5 + 1}", f"w{n}"))
                    if result.deferrals:
                        return

            async def nothing() -> None:
                return None

            first = await provoke(
                h, nothing, until_refused,
                lambda: h.run(h.acme, put_property("MIG-5", "held")),
                lambda: h.run(h.globex, put_property("GLX-1")),
            )
    assert first.reason == "jira-quota-global-based" and first.retry_after is not None
    ends = first.at + first.retry_after
    later = [a for a in sb.world.jira_arrivals or () if a.at > first.at]
    assert {a.cloud_id for a in later} == {CLOUD_A, CLOUD_B}
    assert all(a.at >= ends for a in later)
    all_done(h)


async def test_edge_429_without_reason_holds_the_site(start_sandbox: StartSandbox) -> None:
    """An edge-style 429 (no reason, no Retry-After) holds that whole site until its
    X-RateLimit-Reset, while another site's calls go on."""
    async with start_sandbox(sandbox_config(burst_get_post=4, edge_429_rate=1.0)) as sb:
        sb.world.jira_arrivals = []
        async with harness(sb, policy=ONE_ATTEMPT) as h:

            async def warm_up() -> None:
                for _ in range(4):
                    await h.run(h.acme, get_issue("MIG-1"))

            with capture_logs() as logs:
                first = await provoke(
                    h, warm_up, lambda: h.run(h.acme, get_issue("MIG-1")),
                    lambda: h.run(h.acme, myself()),
                    *[lambda: h.run(h.globex, myself())] * 2,
                )
    assert first.reason == "edge" and first.retry_after is None
    limited = [e for e in logs if e["event"] == "runner.jira.rate_limited"]
    assert limited[0]["scope"] == "site:acme" and limited[0]["retry_after_s"] is None
    reset = limited[0]["reset_at"]
    assert reset > first.at
    assert all(a.at >= reset for a in arrivals(sb.world, CLOUD_A, where=lambda a: a.at > first.at))
    assert len(arrivals(sb.world, CLOUD_A, where=lambda a: a.at > first.at)) == 2
    assert len(arrivals(sb.world, CLOUD_B, where=window(first, reset))) == 2
    all_done(h)


@pytest.mark.parametrize(
    ("reason", "scope"),
    [
        ("jira-max-concurrent-threads-across-all-instances-per-tenant-per-user", "site:acme"),
        ("jira-quota-tenant-based", "quota:acme:tenant"),
    ],
)
async def test_unknown_and_tenant_reasons_hold_the_site(
    start_sandbox: StartSandbox, reason: str, scope: str
) -> None:
    """An unknown reason pauses the whole site and a tenant quota that site's quota: every call
    to it waits out Retry-After while another site's calls go on."""
    async with start_sandbox(sandbox_config(burst_get_post=4)) as sb:
        sb.world.jira_arrivals = []
        async with (
            rewriting_proxy(sb.url, reason) as proxy,
            harness(sb, policy=ONE_ATTEMPT, acme_base=f"{proxy}/ex/jira/{CLOUD_A}") as h,
        ):

            async def warm_up() -> None:
                for _ in range(4):
                    await h.run(h.acme, get_issue("MIG-1"))

            first = await provoke(
                h, warm_up, lambda: h.run(h.acme, get_issue("MIG-1")),
                *[lambda: h.run(h.acme, myself())] * 2,
                *[lambda: h.run(h.globex, myself())] * 2,
            )
    assert first.retry_after is not None
    ends = first.at + first.retry_after
    assert h.observer.named("jira.rate_limited")[0]["scope"] == scope
    assert h.observer.named("jira.rate_limited")[0]["reason"] == reason
    later = arrivals(sb.world, CLOUD_A, where=lambda a: a.at > first.at)
    assert len(later) == 3 and all(a.at >= ends for a in later)
    assert len(arrivals(sb.world, CLOUD_B, where=window(first, ends))) == 2
    all_done(h)


async def test_beta_headers_are_not_enforced(start_sandbox: StartSandbox) -> None:
    """Beta- rate-limit warnings on successful answers are parsed but pause nothing."""
    config = sandbox_config(burst_get_post=2, beta_headers=True)
    async with start_sandbox(config) as sb, harness(sb, policy=ONE_ATTEMPT) as h:
        for _ in range(6):
            await h.run(h.acme, get_issue("MIG-1"))
    all_done(h)
    assert all(r.deferrals == 0 for r in h.results)
    assert h.observer.named("pause") == [] and h.pacer.pauses.active() == {}
    warned = parse_rate_limit(h.results[-1].response.headers, 0.0)
    assert warned.reason is None
    assert warned.beta is not None and warned.beta.reason == "jira-burst-based"


async def test_retry_after_zero_without_jitter_ends_at_the_deadline(
    start_sandbox: StartSandbox,
) -> None:
    """A call Jira keeps answering 429 with Retry-After: 0, with no jitter, fails with
    "deadline" once the deadline passes instead of re-sending forever."""
    policy = replace(ONE_ATTEMPT, wait_jitter_s=0.0, deadline_s=0.4)
    async with (
        start_sandbox(sandbox_config(quota_points=1)) as sb,
        rewriting_proxy(sb.url, "jira-quota-global-based", retry_after="0") as proxy,
        harness(sb, policy=policy, acme_base=f"{proxy}/ex/jira/{CLOUD_A}") as h,
    ):
        assert isinstance(await h.run(h.acme, myself()), Done)  # the quota's one point
        started = time.monotonic()
        async with asyncio.timeout(10):  # the old loop never ended: fail, don't hang
            result = await h.run(h.acme, myself())
        elapsed = time.monotonic() - started
    assert isinstance(result, Failed) and result.reason == "deadline", result
    assert result.attempts == 0 and result.deferrals >= 1
    assert len(sb.world.rate_limits) == result.deferrals
    assert 0.3 <= elapsed < 5.0
