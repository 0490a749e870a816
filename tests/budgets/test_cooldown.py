"""Scoped cooldowns: a pause holds back only its scope and the scopes beneath it."""

from __future__ import annotations

import asyncio
import time

from runner.budgets import SystemClock
from runner.budgets.cooldown import Cooldowns
from runner.events import Pause, Resume
from runner.jira.ratelimit import Scope
from tests.fakes import Events, FakeClock

BURST_A = Scope.burst("acme", "GET", "/rest/api/3/issue/{issueIdOrKey}")
ISSUE_A = Scope.issue("acme", "MIG-1")
BURST_B = Scope.burst("globex", "GET", "/rest/api/3/issue/{issueIdOrKey}")


async def test_wait_sleeps_until_the_pause_ends() -> None:
    """A waiter on a paused scope returns exactly when the pause ends, after one timer."""
    clock = FakeClock(1000.0)
    cd = Cooldowns(clock=clock)
    cd.block(BURST_A, clock.t + 5, "jira-burst-based")
    assert await cd.wait([BURST_A])
    assert clock.t == 1005.0 and clock.sleeps == [5.0]


async def test_other_scopes_and_sites_are_not_held() -> None:
    """A burst pause on one site holds neither another endpoint nor another site."""
    clock = FakeClock(1000.0)
    cd = Cooldowns(clock=clock)
    cd.block(BURST_A, clock.t + 5, "jira-burst-based")
    assert await cd.wait([BURST_B, Scope.burst("acme", "POST", "/x")])
    assert clock.sleeps == []


async def test_parents_hold_their_children() -> None:
    """A site pause holds every request of the site; an app-wide quota pause holds all sites."""
    clock = FakeClock(1000.0)
    cd = Cooldowns(clock=clock)
    cd.block(Scope.of_site("acme"), clock.t + 3, "unknown")
    assert cd.blocked_until([BURST_A, ISSUE_A]) == 1003.0
    assert cd.blocked_until([BURST_B]) is None
    cd.block(Scope.global_quota(), clock.t + 7, "jira-quota-global-based")
    assert cd.blocked_until([BURST_B]) == 1007.0
    cd.block(Scope.tenant_quota("globex"), clock.t + 9, "jira-quota-tenant-based")
    assert cd.blocked_until([BURST_B]) == 1009.0
    assert cd.blocked_until([BURST_A]) == 1007.0


async def test_later_until_wins() -> None:
    """An earlier until never shortens a pause; a later one extends it and is reported."""
    clock = FakeClock(1000.0)
    rec = Events()
    cd = Cooldowns(clock=clock, observer=rec)
    cd.block(ISSUE_A, 1010.0, "jira-per-issue-on-write")
    cd.block(ISSUE_A, 1004.0, "jira-per-issue-on-write")
    assert cd.blocked_until([ISSUE_A]) == 1010.0
    cd.block(ISSUE_A, 1020.0, "jira-per-issue-on-write")
    assert cd.blocked_until([ISSUE_A]) == 1020.0
    assert [e.until for e in rec.of(Pause)] == [1010.0, 1020.0]
    assert rec.of(Pause)[0].scope == "issue:acme:MIG-1"


async def test_a_pause_extended_during_the_wait_is_honoured() -> None:
    """A waiter whose scope is paused again while it sleeps sleeps on to the new end."""
    clock = FakeClock(1000.0)
    cd = Cooldowns(clock=clock)
    cd.block(BURST_A, 1002.0, "jira-burst-based")

    def extend() -> None:
        clock.on_sleep = None
        cd.block(Scope.of_site("acme"), 1006.0, "unknown")

    clock.on_sleep = extend
    assert await cd.wait([BURST_A])
    assert clock.t == 1006.0 and clock.sleeps == [2.0, 4.0]


async def test_deadline_gives_up_without_sleeping() -> None:
    """A pause lasting past the deadline makes wait return False at once."""
    clock = FakeClock(1000.0)
    cd = Cooldowns(clock=clock)
    cd.block(Scope.global_quota(), 1100.0, "jira-quota-global-based")
    assert not await cd.wait([BURST_B], deadline=1050.0)
    assert clock.sleeps == []
    assert await cd.wait([BURST_B], deadline=1200.0)


async def test_expired_pause_is_resumed_and_forgotten() -> None:
    """Once a pause ends it is reported as resumed and no longer listed."""
    clock = FakeClock(1000.0)
    rec = Events()
    cd = Cooldowns(clock=clock, observer=rec)
    cd.block(BURST_A, 1001.0, "jira-burst-based")
    assert cd.active() == {BURST_A: (1001.0, "jira-burst-based")}
    clock.t = 1001.5
    assert cd.blocked_until([BURST_A]) is None
    assert cd.active() == {}
    assert rec.seen[-1] == Resume(scope=str(BURST_A))


async def test_real_clock_waiters_release_together_after_the_pause() -> None:
    """With the real clock, every waiter of a paused scope is released no earlier than its end."""
    cd = Cooldowns(clock=SystemClock())
    until = time.time() + 0.2
    cd.block(BURST_A, until, "jira-burst-based")
    released: list[float] = []

    async def waiter() -> None:
        await cd.wait([BURST_A])
        released.append(time.time())

    async with asyncio.TaskGroup() as tg:
        for _ in range(3):
            tg.create_task(waiter())
    assert len(released) == 3 and min(released) >= until
