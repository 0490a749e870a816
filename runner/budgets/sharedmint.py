"""The mint bucket every process on one journal shares: its starts are rows in the budget store.

Starts are spaced evenly, one every ``interval`` seconds by the database's clock (one stored
theoretical arrival time per bucket, GCRA), for every process together, so the gateway's
sliding window is respected from the first second, as ``runner.budgets.mint`` does in memory.

The margin follows the jitter actually measured instead of a fixed 2%: the gateway counts a
mint when it arrives, somewhere between the take (judged by the database's clock) and its
answer. ``limit + 1`` starts span at least ``(limit - SLACK) * interval`` (``SLACK``: the part
of a slot a late waiter may catch up, so oversleeping costs no throughput), and their arrivals
at least that less the largest take-to-answer delay seen, so ``interval`` is chosen to make
that more than ``window_s``: ``(window_s + delay) / (limit - SLACK)``.

Within a process, takers queue on a FIFO lock and only the head asks the store (no thundering
herd); a 429's pause is stored (``blocked_until``) so every process waits it out.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from runner.budgets import Clock, SystemClock
from runner.budgets.store import BudgetStore
from runner.budgets.store.programs import mint_take, pause, paused_for
from runner.config.configfile import EnvironmentConfig
from runner.events import Emitter, Observer, Pause, Resume

SLACK = 0.25
# Before any mint has been answered: a delay a loopback or LAN gateway stays under.
INITIAL_DELAY_S = 0.02
# The delays remembered: enough to span a window's worth of mints at Atlassian's rates.
DELAYS_KEPT = 256


class Background:
    """Store writes made from synchronous callbacks (a 429 seen): run as tasks, awaited by
    ``settle`` before the next take, so a process never outruns its own news."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def start(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settle(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks))


class SharedMintBucket:
    """At most ``limit`` mint starts in any ``window_s`` for every process on the store."""

    def __init__(self, name: str, limit: int, window_s: float, store: BudgetStore, *,
                 clock: Clock | None = None, observer: Observer | None = None,
                 background: Background | None = None) -> None:
        if limit < 1 or window_s <= 0:
            raise ValueError("a mint bucket needs limit >= 1 and window_s > 0")
        self.name = name
        self.limit = limit
        self.window_s = window_s
        self._store = store
        self._clock: Clock = clock or SystemClock()
        self._emit = Emitter(observer)
        self._background = background or Background()
        self._lock = asyncio.Lock()
        self._delays: deque[float] = deque([INITIAL_DELAY_S], maxlen=DELAYS_KEPT)
        self._paused_until = 0.0
        self._announced = False
        self.started = 0

    @property
    def scope(self) -> str:
        return f"mint:{self.name}"

    @property
    def interval(self) -> float:
        """Seconds between starts: the window and the worst delay seen, over the limit."""
        return (self.window_s + max(self._delays)) / max(self.limit - SLACK, 0.5)

    @property
    def paused_until(self) -> float | None:
        return self._paused_until if self._paused_until > self._clock.now() else None

    async def acquire(self) -> None:
        """Take one start (its answer time unknown: the send stands for it)."""
        await self._take()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """``async with bucket.slot(): <send one mint>``: its take-to-answer delay is measured."""
        began = await self._take()
        try:
            yield
        finally:
            self._delays.append(time.monotonic() - began)

    async def _take(self) -> float:
        async with self._lock:
            await self._background.settle()
            while True:
                local = self._paused_until - self._clock.now()
                if local > 0:
                    await self._clock.sleep(local)
                    continue
                began = time.monotonic()
                interval = self.interval
                grant = await self._store.run(mint_take(self.scope, interval, SLACK * interval))
                if grant.ok:
                    self.started += 1
                    if self._announced:
                        self._announced = False
                        self._emit(Resume(scope=self.scope))
                    return began
                if grant.paused and not self._announced:
                    self._announced = True
                    self._emit(Pause(scope=self.scope, reason=grant.reason,
                                     until=self._clock.now() + grant.wait_s))
                await self._clock.sleep(grant.wait_s)

    def pause_until(self, until: float, reason: str) -> bool:
        """Hold every process's mints until ``until`` (POSIX, this host's clock; stored as a
        wait from the database's now). A later pause wins. Whether it was extended here."""
        if until <= self._paused_until:
            return False
        self._paused_until = until
        self._announced = True
        self._emit(Pause(scope=self.scope, reason=reason, until=until))
        self._background.start(
            self._store.run(pause(self.scope, until - self._clock.now(), reason)))
        return True

    async def stored_pause(self) -> float:
        """Seconds the stored pause on this bucket still lasts (for tests and status)."""
        return await self._store.run(paused_for([self.scope]))


class SharedMintBuckets:
    """The shared mint buckets by name: environments naming one bucket share it."""

    def __init__(self, store: BudgetStore, *, clock: Clock | None = None,
                 observer: Observer | None = None) -> None:
        self._store = store
        self._clock = clock
        self._observer = observer
        self._background = Background()
        self._buckets: dict[str, SharedMintBucket] = {}

    def for_environment(self, env: EnvironmentConfig) -> SharedMintBucket:
        bucket = self._buckets.get(env.bucket)
        if bucket is None:
            bucket = SharedMintBucket(env.bucket, env.mint_limit, env.mint_window_s, self._store,
                                      clock=self._clock, observer=self._observer,
                                      background=self._background)
            self._buckets[env.bucket] = bucket
        return bucket

    async def settle(self) -> None:
        await self._background.settle()
