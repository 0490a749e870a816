"""The token cache: reuse until near expiry, single flight, invalidation, bounded memory."""

from __future__ import annotations

import asyncio

import pytest

from runner.budgets import ManualClock
from runner.minting.gateway import Minted
from runner.minting.user_tokens import TokenCache
from tests.fakes import all_tasks_blocked

KEY = ("dev", "acme", "5ca1ab1e0000000000000001")


class Mints:
    """Counts mints; each returns a new token; can be held open until released."""

    def __init__(self, clock: ManualClock, ttl: float = 3600.0) -> None:
        self.clock = clock
        self.ttl = ttl
        self.count = 0
        self.release = asyncio.Event()
        self.hold = False
        self.fail: Exception | None = None

    async def __call__(self) -> Minted:
        self.count += 1
        if self.hold:
            await self.release.wait()
        if self.fail is not None:
            raise self.fail
        return Minted(f"user-token-{self.count:04d}", self.ttl, self.clock.now())


async def test_reused_until_expiry_less_margin() -> None:
    """A token serves every call until expires_at - margin, then one new mint replaces it."""
    clock = ManualClock()
    mints = Mints(clock)
    cache = TokenCache(refresh_margin_s=300.0, clock=clock)
    first = await cache.get(KEY, mints)
    for _ in range(10):
        assert await cache.get(KEY, mints) == first
    clock.advance(3600.0 - 300.0 - 1.0)
    assert await cache.get(KEY, mints) == first
    clock.advance(2.0)
    assert await cache.get(KEY, mints) != first
    assert mints.count == 2


async def test_short_lived_tokens_are_used_for_half_their_life() -> None:
    """A token living less than twice the margin is still reused for half its life."""
    clock = ManualClock()
    mints = Mints(clock, ttl=60.0)
    cache = TokenCache(refresh_margin_s=300.0, clock=clock)
    first = await cache.get(KEY, mints)
    clock.advance(29.0)
    assert await cache.get(KEY, mints) == first
    assert mints.count == 1


async def test_concurrent_callers_share_one_mint() -> None:
    """50 concurrent callers for one key make exactly one mint and all get its token."""
    clock = ManualClock()
    mints = Mints(clock)
    mints.hold = True
    cache = TokenCache(clock=clock)
    got: list[str] = []

    async def caller() -> None:
        got.append(await cache.get(KEY, mints))

    async with asyncio.TaskGroup() as tg:
        for _ in range(50):
            tg.create_task(caller())
        await all_tasks_blocked()
        mints.release.set()
    assert mints.count == 1
    assert got == ["user-token-0001"] * 50


async def test_waiters_share_the_mint_error() -> None:
    """When the one mint fails, every waiting caller gets its error; the next call mints anew."""
    clock = ManualClock()
    mints = Mints(clock)
    mints.hold = True
    mints.fail = RuntimeError("refused")
    cache = TokenCache(clock=clock)
    errors: list[BaseException] = []

    async def caller() -> None:
        try:
            await cache.get(KEY, mints)
        except RuntimeError as exc:
            errors.append(exc)

    async with asyncio.TaskGroup() as tg:
        for _ in range(10):
            tg.create_task(caller())
        await all_tasks_blocked()
        mints.release.set()
    assert len(errors) == 10 and all(str(e) == "refused" for e in errors)
    assert mints.count == 1
    mints.fail, mints.hold = None, False
    assert await cache.get(KEY, mints) == "user-token-0002"


async def test_a_cancelled_minter_hands_over_to_a_waiter() -> None:
    """If the caller doing the mint is cancelled, a waiting caller mints instead of hanging."""
    clock = ManualClock()
    mints = Mints(clock)
    mints.hold = True
    cache = TokenCache(clock=clock)
    got: list[str] = []

    async def wait() -> None:
        got.append(await cache.get(KEY, mints))

    async with asyncio.TaskGroup() as tg:
        leader = tg.create_task(cache.get(KEY, mints))
        await all_tasks_blocked()
        tg.create_task(wait())
        await all_tasks_blocked()
        leader.cancel()
        await all_tasks_blocked()
        mints.release.set()
    assert got == ["user-token-0002"]
    assert mints.count == 2


async def test_invalidate_drops_only_the_same_token() -> None:
    """invalidate drops the token a 401 answered, not a newer one; the next get mints once."""
    clock = ManualClock()
    mints = Mints(clock)
    cache = TokenCache(clock=clock)
    first = await cache.get(KEY, mints)
    assert cache.invalidate(KEY, first)
    second = await cache.get(KEY, mints)
    assert second != first and mints.count == 2
    assert not cache.invalidate(KEY, first)  # a late 401 for the old token
    assert await cache.get(KEY, mints) == second
    assert mints.count == 2


async def test_memory_is_bounded() -> None:
    """Expired entries are dropped and the cache never holds more than max_entries."""
    clock = ManualClock()
    mints = Mints(clock, ttl=100.0)
    cache = TokenCache(clock=clock, max_entries=50)
    for i in range(200):
        await cache.get(("dev", "acme", f"user-{i}"), mints)
        assert len(cache) <= 50
    clock.advance(101.0)
    await cache.get(("dev", "acme", "one-more"), mints)
    assert len(cache) == 1


def test_token_not_in_repr() -> None:
    """A minted token's repr names its lifetime and ids, never the token."""
    minted = Minted("secret-user-token-value", 3600.0, 1.0, "req-1", "trace-1")
    assert "secret-user-token-value" not in repr(minted)
    assert minted.expires_at == pytest.approx(3601.0)
