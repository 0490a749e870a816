"""JiraPacer: the budgets together, FIFO, cancellation, what answers teach it, pause events."""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from typing import Any

import pytest

from runner.budgets import ManualClock
from runner.budgets.jira import JiraPacer, Taken
from runner.config.configfile import JiraBudgets
from runner.events import Pause, Resume
from runner.jira.client import JiraRequest
from runner.jira.ratelimit import Scope, parse_rate_limit
from runner.sandbox.jira.limits import iso_time
from tests.fakes import Events

WINDOW = 10.0
START = 100_000 * WINDOW  # the start of a quota window
API = "/rest/api/3"
ISSUE_T = f"{API}/issue/{{issueIdOrKey}}"
PROPERTY_T = f"{ISSUE_T}/properties/{{propertyKey}}"
LOOSE = JiraBudgets(quota_points=1_000_000, quota_window_s=WINDOW, burst_get_post=10_000,
                    burst_put_delete=10_000, per_issue_2s=10_000, per_issue_30s=10_000)


def scopes(events: Events, kind: type[Pause | Resume]) -> list[str]:
    return [e.scope for e in events.of(kind)]


def get_issue(key: str = "MIG-1", cost: int = 1) -> JiraRequest:
    return JiraRequest("GET", f"{API}/issue/{key}", ISSUE_T, cost=cost)


def put_property(key: str = "MIG-1") -> JiraRequest:
    return JiraRequest("PUT", f"{API}/issue/{key}/properties/p", PROPERTY_T, json={"v": 1},
                       issue=key)


def pacer_for(budgets: JiraBudgets, clock: ManualClock, **kw: Any) -> tuple[JiraPacer, Events]:
    events = Events()
    return JiraPacer(budgets, clock=clock, observer=events, **kw), events


async def acquire_all(pacer: JiraPacer, clock: ManualClock,
                      requests: list[tuple[str, JiraRequest]]) -> list[tuple[int, float]]:
    """Acquire for every (site, request) at once, each answered at once (200, no headers);
    (index, time) in the order permits came."""
    got: list[tuple[int, float]] = []

    async def one(i: int, site: str, request: JiraRequest) -> None:
        await pacer.acquire(site, request)
        got.append((i, clock.now()))
        pacer.observe(site, request, 200)

    async with asyncio.TaskGroup() as tg:
        for i, (site, request) in enumerate(requests):
            tg.create_task(one(i, site, request))
    return got


async def test_calls_spend_the_quota_evenly_and_never_past_it() -> None:
    """300 calls wanting a 100-point quota at once: no window gets more than its 98 usable
    points, and within a window they are spread to the reset."""
    clock = ManualClock(START)
    budgets = JiraBudgets(quota_points=100, quota_window_s=WINDOW, burst_get_post=10_000)
    pacer, _ = pacer_for(budgets, clock)
    got = await acquire_all(pacer, clock, [("acme", get_issue())] * 300)
    windows = Counter(math.floor(t / WINDOW) for _, t in got)
    assert max(windows.values()) <= 98
    assert len(windows) == 4 and sorted(windows.values())[-3:] == [98, 98, 98]
    second = sorted(t - START - WINDOW for _, t in got if START + WINDOW <= t < START + 2 * WINDOW)
    halves = (sum(1 for t in second if t < WINDOW / 2), sum(1 for t in second if t >= WINDOW / 2))
    assert abs(halves[0] - halves[1]) <= 2


async def test_waiters_are_served_in_arrival_order() -> None:
    """Calls held back by one budget get their permits first come, first served."""
    clock = ManualClock(START)
    budgets = JiraBudgets(quota_points=20, quota_window_s=WINDOW, burst_get_post=10_000)
    pacer, _ = pacer_for(budgets, clock, quota_burst=0.0)
    got = await acquire_all(pacer, clock, [("acme", get_issue())] * 40)
    assert [i for i, _ in got] == list(range(40))


async def test_a_cancelled_waiter_takes_nothing() -> None:
    """A write cancelled while waiting for its burst key leaves no trace: the next write goes
    when it would have without it, and only the first write is in the issue's log."""
    clock = ManualClock(START)
    budgets = JiraBudgets(quota_points=1000, quota_window_s=WINDOW, burst_put_delete=1)
    pacer, _ = pacer_for(budgets, clock)
    await pacer.acquire("acme", put_property())
    before = pacer.quota.remaining(clock.now())
    async with asyncio.TaskGroup() as tg:

        async def waiter() -> None:
            await pacer.acquire("acme", put_property())
            pytest.fail("the waiter got a permit")

        task = tg.create_task(waiter())
        # Step the loop until the waiter sits in the manual clock's sleep (it has no event).
        while not clock.sleeps:  # noqa: ASYNC110
            await asyncio.sleep(0)
        assert not task.done()
        task.cancel()
    assert clock.now() == START
    assert pacer.quota.remaining(START) == before
    issue = Scope.issue("acme", "MIG-1")
    assert pacer.issues.ready_at(issue, START) == START
    await pacer.acquire("acme", put_property())
    assert clock.now() == pytest.approx(START + 1.0)


async def test_a_cancelled_waiter_leaves_no_pause_behind() -> None:
    """A waiter that announced a pause and is then cancelled, with no one behind it, resumes
    the scope it paused."""
    clock = ManualClock(START)
    pacer, events = pacer_for(LOOSE, clock)
    pacer.quota.exhausted(START + 5, START)
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(pacer.acquire("acme", get_issue()))
        # Step the loop until the waiter sits in the manual clock's sleep (it has no event).
        while not clock.sleeps:  # noqa: ASYNC110
            await asyncio.sleep(0)
        assert not task.done()
        task.cancel()
    assert scopes(events, Pause) == ["quota:global"]
    assert scopes(events, Resume) == ["quota:global"]


async def test_a_permit_given_back_returns_what_it_took() -> None:
    """A call acquired but not sent gives back its points, its burst token and its write."""
    clock = ManualClock(START)
    budgets = JiraBudgets(quota_points=1000, quota_window_s=WINDOW, burst_put_delete=1,
                          per_issue_2s=1)
    pacer, _ = pacer_for(budgets, clock)
    permit = await pacer.acquire("acme", put_property())
    assert isinstance(permit, Taken)
    pacer.give_back(permit)
    assert pacer.quota.remaining(START) == 1000
    await pacer.acquire("acme", put_property())
    assert clock.now() == START


async def test_writes_to_one_issue_are_spaced_and_other_issues_are_not() -> None:
    """Per-issue spacing holds writes to MIG-1 to 20 per 2 s while MIG-2 goes at once."""
    clock = ManualClock(START)
    budgets = JiraBudgets(quota_points=1_000_000, quota_window_s=WINDOW,
                          burst_put_delete=10_000, per_issue_2s=20, per_issue_30s=100)
    pacer, _ = pacer_for(budgets, clock)
    got = await acquire_all(pacer, clock, [("acme", put_property("MIG-1"))] * 41)
    times = sorted(t for _, t in got)
    assert sum(1 for t in times if t < START + 2.0) == 20
    assert times[20] >= START + 2.0 and times[40] >= START + 4.0
    now = clock.now()
    await pacer.acquire("acme", put_property("MIG-2"))
    assert clock.now() == now


async def test_a_burst_429_slows_only_its_key() -> None:
    """A jira-burst-based 429 on acme's GET issue halves that key's rate; the same endpoint on
    globex and another endpoint on acme keep theirs."""
    clock = ManualClock(START)
    pacer, _ = pacer_for(JiraBudgets(), clock)
    info = parse_rate_limit({"RateLimit-Reason": "jira-burst-based", "Retry-After": "1"},
                            START)
    pacer.observe("acme", get_issue(), 429, info)
    assert pacer.bucket("acme", "GET", ISSUE_T).rate(START) == 50
    assert pacer.bucket("globex", "GET", ISSUE_T).rate(START) == 100
    assert pacer.bucket("acme", "PUT", PROPERTY_T).rate(START) == 50  # PUT's own default
    assert pacer.bucket("acme", "GET", f"{API}/myself").rate(START) == 100
    assert pacer.bucket("acme", "GET", ISSUE_T).rate(START + 20) == pytest.approx(70)


async def test_a_quota_429_holds_every_call_until_the_reset() -> None:
    """After jira-quota-global-based, the next call on any site waits for the reset."""
    clock = ManualClock(START + 3)
    pacer, events = pacer_for(LOOSE, clock)
    reset = iso_time(START + WINDOW)
    info = parse_rate_limit({"RateLimit-Reason": "jira-quota-global-based",
                             "X-RateLimit-Reset": reset}, START + 3)
    pacer.observe("acme", get_issue(), 429, info)
    await pacer.acquire("globex", get_issue())
    assert START + WINDOW <= clock.now() < START + WINDOW + 0.1
    assert "quota:global" in scopes(events, Pause)


async def test_a_tenant_quota_429_holds_only_that_site() -> None:
    """jira-quota-tenant-based zeroes acme's own quota until its reset; globex goes on."""
    clock = ManualClock(START + 3)
    pacer, _ = pacer_for(LOOSE, clock)
    info = parse_rate_limit({"RateLimit-Reason": "jira-quota-tenant-based",
                             "Retry-After": "7"}, START + 3)
    pacer.observe("acme", get_issue(), 429, info)
    await pacer.acquire("globex", get_issue())
    assert clock.now() == START + 3
    await pacer.acquire("acme", get_issue())
    assert START + WINDOW <= clock.now() < START + WINDOW + 0.1


async def test_per_tenant_quotas_pace_each_site_on_its_own() -> None:
    """With per-tenant quotas on, a site that spent its own quota waits; another does not."""
    clock = ManualClock(START)
    pacer, _ = pacer_for(LOOSE, clock, tenant_points=10, quota_burst=0.5)
    for _ in range(5):  # half of 10 points may go at once
        await pacer.acquire("acme", get_issue())
    assert clock.now() == START
    await pacer.acquire("acme", get_issue())
    assert clock.now() > START
    waited = clock.now()
    await pacer.acquire("globex", get_issue())
    assert clock.now() == waited


async def test_jira_headers_correct_the_quota() -> None:
    """A success's X-RateLimit-Remaining below our count lowers it; RateLimit's r and t do
    too; a search's actual cost is charged."""
    clock = ManualClock(START)
    pacer, _ = pacer_for(JiraBudgets(quota_points=1000, quota_window_s=WINDOW), clock)
    request = get_issue(cost=2)
    await pacer.acquire("acme", request)
    info = parse_rate_limit({"X-RateLimit-Limit": "1000", "X-RateLimit-Remaining": "700"},
                            START)
    pacer.observe("acme", request, 200, info)
    assert pacer.quota.remaining(START) == 700
    await pacer.acquire("acme", request)
    info = parse_rate_limit({"RateLimit": '"global-app-quota";r=500;t=9',
                             "RateLimit-Policy": '"global-app-quota";q=1000;w=10'}, START)
    pacer.observe("acme", request, 200, info)
    assert pacer.quota.remaining(START) == 500
    await pacer.acquire("acme", request)
    pacer.observe("acme", request, 200, None, actual_cost=52)
    assert pacer.quota.remaining(START) == 500 - 52


async def test_a_burst_429s_headers_leave_the_quota_alone() -> None:
    """The X-RateLimit-* of a burst 429 describe the burst limit, not the quota."""
    clock = ManualClock(START)
    pacer, _ = pacer_for(JiraBudgets(quota_points=1000, quota_window_s=WINDOW), clock)
    await pacer.acquire("acme", get_issue())
    info = parse_rate_limit({"RateLimit-Reason": "jira-burst-based", "X-RateLimit-Limit": "1000",
                             "X-RateLimit-Remaining": "0",
                             "RateLimit": '"jira-burst-based";r=0;t=1'}, START)
    pacer.observe("acme", get_issue(), 429, info)
    assert pacer.quota.remaining(START) == 999


async def test_near_limit_slows_the_quota() -> None:
    """NearLimit while our count shows plenty left cuts the pace: calls now wait."""
    clock = ManualClock(START)
    budgets = JiraBudgets(quota_points=1000, quota_window_s=WINDOW, burst_get_post=10_000)
    pacer, _ = pacer_for(budgets, clock)
    fast = pacer.quota.rate(START)
    pacer.observe("acme", get_issue(), 200,
                  parse_rate_limit({"X-RateLimit-NearLimit": "true"}, START))
    assert pacer.quota.rate(START) <= fast * 0.2 * 0.5 + 1e-9
    assert pacer.quota.reason(START) == "near limit"


async def test_long_holds_are_announced_as_pauses_with_their_scope() -> None:
    """A burst key and an issue holding work back for a second or more emit pause events
    named by scope, and resume once they let work through freely."""
    clock = ManualClock(START)
    budgets = JiraBudgets(quota_points=1_000_000, quota_window_s=WINDOW, burst_put_delete=1,
                          per_issue_2s=1, per_issue_30s=100)
    pacer, events = pacer_for(budgets, clock, issue_guard_s=0.0)
    await acquire_all(pacer, clock, [("acme", put_property())] * 3)
    burst = f"burst:acme:PUT {PROPERTY_T}"
    paused = scopes(events, Pause)
    assert set(paused) <= {burst, "issue:acme:MIG-1"} and paused
    assert sorted(scopes(events, Resume)) == sorted(set(paused))
    assert all(e.until is not None and e.until > START for e in events.of(Pause))


async def test_short_waits_are_not_pauses() -> None:
    """Pacing that holds each call back a moment emits no pause."""
    clock = ManualClock(START)
    budgets = JiraBudgets(quota_points=1_000_000, quota_window_s=WINDOW, burst_get_post=50)
    pacer, events = pacer_for(budgets, clock)
    await acquire_all(pacer, clock, [("acme", get_issue())] * 200)
    assert clock.now() > START + 3
    assert events.seen == []


async def test_a_permit_left_unspent_gives_back_and_a_spent_one_keeps() -> None:
    """Leaving permit() without spent() returns the points; after spent() they stay taken."""
    clock = ManualClock(START)
    budgets = JiraBudgets(quota_points=1000, quota_window_s=WINDOW, burst_put_delete=10)
    pacer, _ = pacer_for(budgets, clock)
    async with pacer.permit("acme", put_property()):
        pass
    assert pacer.quota.remaining(START) == 1000
    async with pacer.permit("acme", put_property()) as permit:
        permit.spent()
    assert pacer.quota.remaining(START) == 1000 - put_property().cost
