"""The mint bucket: smooth pacing inside the budget, FIFO, cancellation, pauses, sharing."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest

from runner.budgets import ManualClock
from runner.budgets.mint import MintBucket, MintBuckets
from runner.config.configfile import EnvironmentConfig, SystemTokenSource
from runner.events import Pause, Resume
from tests.fakes import Events, all_tasks_blocked


async def starts_of(bucket: MintBucket, clock: ManualClock, n: int) -> list[float]:
    """Start times of ``n`` concurrent acquirers."""
    starts: list[float] = []

    async def one() -> None:
        await bucket.acquire()
        starts.append(clock.now())

    async with asyncio.TaskGroup() as tg:
        for _ in range(n):
            tg.create_task(one())
    return starts


def max_in_any_window(starts: list[float], window: float) -> int:
    """The most starts found in any half-open window [t, t + window)."""
    starts = sorted(starts)
    best = 0
    j = 0
    for i, t in enumerate(starts):
        while starts[j] <= t - window:
            j += 1
        best = max(best, i - j + 1)
    return best


async def test_never_more_than_limit_in_any_window() -> None:
    """500 concurrent acquirers at 100 per 6 s never put more than 100 starts in any 6 s."""
    clock = ManualClock()
    bucket = MintBucket("dev", 100, 6.0, clock=clock)
    starts = await starts_of(bucket, clock, 500)
    assert len(starts) == 500
    assert max_in_any_window(starts, 6.0) <= 100
    # ...even with no headroom at all, by the sliding-log guard alone.
    clock = ManualClock()
    tight = MintBucket("dev", 100, 6.0, clock=clock, headroom=0.0)
    assert max_in_any_window(await starts_of(tight, clock, 500), 6.0) <= 100


async def test_paces_smoothly_from_the_first_second() -> None:
    """No burst at start: the second start waits a full interval, and the first second holds
    no more than its share of the budget (aiolimiter's default would let 100 through)."""
    clock = ManualClock()
    t0 = clock.now()
    bucket = MintBucket("dev", 100, 6.0, clock=clock, headroom=0.0)
    starts = await starts_of(bucket, clock, 100)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert starts[0] == t0
    assert min(gaps) == pytest.approx(0.06)
    assert sum(1 for s in starts if s < t0 + 1.0) <= 17


async def test_achieves_the_budget_less_headroom() -> None:
    """Paced starts use the budget: 1,000 starts at 100 per 6 s take 60 s plus the headroom."""
    clock = ManualClock()
    bucket = MintBucket("dev", 100, 6.0, clock=clock, headroom=0.02)
    starts = await starts_of(bucket, clock, 1001)
    rate = 1000 / (starts[-1] - starts[0])
    assert rate / (100 / 6.0) == pytest.approx(1 / 1.02)


async def test_idle_time_is_not_banked() -> None:
    """After a quiet spell the next starts are spaced again instead of bursting to catch up."""
    clock = ManualClock()
    bucket = MintBucket("dev", 10, 1.0, clock=clock, headroom=0.0)
    await starts_of(bucket, clock, 3)
    clock.advance(60.0)
    starts = await starts_of(bucket, clock, 5)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) == pytest.approx(0.1)


async def test_acquirers_are_served_in_arrival_order() -> None:
    """Acquirers get their slots first come, first served."""
    clock = ManualClock()
    bucket = MintBucket("dev", 5, 1.0, clock=clock)
    order: list[int] = []

    async def one(i: int) -> None:
        await bucket.acquire()
        order.append(i)

    async with asyncio.TaskGroup() as tg:
        for i in range(20):
            tg.create_task(one(i))
            await asyncio.sleep(0)  # arrival order is start order
    assert order == list(range(20))


async def test_cancelled_waiters_cost_no_slot() -> None:
    """Waiters cancelled while queued take no slot: the survivors keep the plain pace."""
    clock = ManualClock()
    bucket = MintBucket("dev", 10, 1.0, clock=clock, headroom=0.0)
    await bucket.acquire()
    t0 = clock.now()
    for _ in range(5):
        waiter = asyncio.create_task(bucket.acquire())
        await asyncio.sleep(0)  # one step: the waiter is now inside its wait for the slot
        assert not waiter.done()
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
    assert bucket.started == 1
    await bucket.acquire()
    assert clock.now() == pytest.approx(t0 + 0.1)
    assert bucket.started == 2


async def test_cancelling_the_head_mid_wait_frees_the_queue() -> None:
    """The head of the queue cancelled while it sleeps releases its turn to the next one."""
    bucket = MintBucket("dev", 1, 3600.0)  # the real clock: the second slot is an hour away
    await bucket.acquire()
    got_in = asyncio.Event()

    async def head() -> None:
        await bucket.acquire()
        got_in.set()

    async with asyncio.TaskGroup() as tg:
        waiting = tg.create_task(head())
        await all_tasks_blocked()
        waiting.cancel()
    assert not got_in.is_set()
    assert bucket.started == 1
    assert not bucket._lock.locked()


async def test_pause_holds_every_acquirer_and_later_pause_wins() -> None:
    """pause_until holds all acquirers until the latest pause; an earlier one changes nothing."""
    clock = ManualClock()
    events = Events()
    bucket = MintBucket("dev", 100, 1.0, clock=clock, observer=events)
    t0 = clock.now()
    assert bucket.pause_until(t0 + 5.0, "mint rate limited (retry_after)")
    assert not bucket.pause_until(t0 + 2.0, "an earlier one")
    assert bucket.pause_until(t0 + 7.0, "mint rate limited (reset)")
    assert bucket.paused_until == t0 + 7.0
    starts = await starts_of(bucket, clock, 3)
    assert min(starts) >= t0 + 7.0
    pauses = events.of(Pause)
    assert [p.until for p in pauses] == [t0 + 5.0, t0 + 7.0]
    assert all(p.scope == "mint:dev" for p in pauses)
    assert events.of(Resume) == [Resume(scope="mint:dev")]


def env(name: str, bucket: str = "", limit: int = 1000, window: float = 60.0) -> EnvironmentConfig:
    return EnvironmentConfig(
        name=name,
        app_id="ari:cloud:ecosystem::app/8db5c0f5-3a48-4d2b-9c4b-4d2f0a7e6a11",
        system_token=SystemTokenSource(env="FORGE_SYSTEM_TOKEN", cwd=Path(".")),
        mint_bucket=bucket,
        mint_limit=limit,
        mint_window_s=window,
    )


def test_environments_naming_one_bucket_share_it() -> None:
    """Two environments naming one bucket get the same bucket; others get their own."""
    buckets = MintBuckets()
    shared = buckets.for_environment(env("staging", bucket="app"))
    assert buckets.for_environment(env("prod", bucket="app")) is shared
    own = buckets.for_environment(env("dev"))
    assert own is not shared
    assert own.name == "dev" and "dev" in buckets and buckets["app"] is shared


async def test_slow_answers_hold_the_next_window() -> None:
    """With slots, the limit+1-th start waits a full window after the first one's answer, so a
    slow answer (a late arrival at the gateway) can't pack limit+1 arrivals into a window."""
    clock = ManualClock(start=0.0)
    bucket = MintBucket("b", limit=3, window_s=3.0, clock=clock, headroom=0.0)
    starts: list[float] = []
    for _ in range(3):
        async with bucket.slot():
            starts.append(clock.now())
            clock.advance(0.5 if not starts[1:] else 0.0)  # the first answer takes 0.5 s
    async with bucket.slot():
        starts.append(clock.now())
    assert starts[:3] == [0.0, 1.0, 2.0]
    assert starts[3] == pytest.approx(3.5)  # not 3.0: a window after the first answer


async def test_an_unanswered_start_holds_the_window_until_it_answers() -> None:
    """The guard waits for the oldest start's answer before it lets the next window begin."""
    clock = ManualClock(start=0.0)
    bucket = MintBucket("b", limit=1, window_s=1.0, clock=clock, headroom=0.0)
    answered = asyncio.Event()
    second_at: list[float] = []

    async def first() -> None:
        async with bucket.slot():
            await answered.wait()
            clock.advance(2.0)

    async def second() -> None:
        await bucket.acquire()
        second_at.append(clock.now())

    async with asyncio.TaskGroup() as tg:
        tg.create_task(first())
        await all_tasks_blocked()
        tg.create_task(second())
        await all_tasks_blocked()
        assert second_at == []
        answered.set()
    assert second_at == [pytest.approx(3.0)]
