"""The mint bucket every process on one journal shares: its starts are rows in the budget store.

Two rules, both judged by the database's clock for every process together
(``runner.budgets.store.mints.mint_take``):
- starts are spaced evenly, one every ``interval`` (one stored theoretical arrival time per
  bucket, GCRA), so a sliding window is respected from the first second, as in memory;
- no start leaves less than ``window_s`` after the answer to the start ``limit`` before it.
  The gateway counts a mint when it arrives, somewhere between its take and its answer, so this
  guard keeps ``limit + 1`` arrivals out of any window whatever the delays, with no fixed margin.

So the margin need not cover the worst delay: ``interval`` is ``(window_s + typical delay) /
limit``, the typical delay being the median of the grant-to-answer delays measured lately (tens
of milliseconds a window on loopback: 0.996 of the budget measured, where the fixed 2% gave
0.982). A start the guard or an overslept wait held back may catch up ``SLACK`` slots, so the
pace over a window stays the budget's; the guard keeps any catch-up inside the window.

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
from runner.budgets.store.mints import mint_take
from runner.budgets.store.programs import mint_answered, pause, paused_for
from runner.config.configfile import EnvironmentConfig
from runner.events import Emitter, Observer, Pause, Resume

# Slots a late start may catch up (the guard keeps any catch-up inside the window).
SLACK = 4.0
# Before any mint has been answered: a delay a loopback or LAN gateway stays under.
INITIAL_DELAY_S = 0.02
# The delays remembered, and the share of them the margin covers (the guard covers the rest).
DELAYS_KEPT = 256
DELAY_QUANTILE = 0.5
# A start whose answer never came (its process died mid-mint) counts as answered this long
# after it left: a gateway answers in well under that, and a dead process holds the bucket's
# window guard no longer.
UNANSWERED_MINT_S = 5.0


class Background:
    """Store writes made from synchronous callbacks (a 429 seen, an answer come): run as
    tasks beside the takes (this process already acts on what it writes), all awaited by
    ``settle`` before the run ends."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._failure: BaseException | None = None

    def start(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        # Every outcome is taken here, so a write that failed while the run was already
        # stopping (the journal's disk full) is raised by ``settle``, not printed by asyncio.
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None and self._failure is None:
            self._failure = task.exception()

    async def settle(self) -> None:
        """Until every write has ended; the first that failed is raised."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure


class SharedMintBucket:
    """At most ``limit`` mint starts in any ``window_s`` for every process on the store."""

    def __init__(self, name: str, limit: int, window_s: float, store: BudgetStore, *,
                 clock: Clock | None = None, observer: Observer | None = None,
                 background: Background | None = None, answer_limit_s: float = 60.0) -> None:
        """``answer_limit_s``: how long a mint's answer can take (the request timeout): a
        start never answered (its process died) stops counting after it."""
        if limit < 1 or window_s <= 0:
            raise ValueError("a mint bucket needs limit >= 1 and window_s > 0")
        self.name = name
        self.limit = limit
        self.window_s = window_s
        self._answer_limit = answer_limit_s
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
        """Seconds between starts: the window and the typical delay, over the limit."""
        delays = sorted(self._delays)
        typical = delays[min(len(delays) - 1, int(DELAY_QUANTILE * len(delays)))]
        return (self.window_s + typical) / self.limit

    @property
    def paused_until(self) -> float | None:
        return self._paused_until if self._paused_until > self._clock.now() else None

    async def acquire(self) -> None:
        """Take one start, answered at once (for a caller that can't wait for its answer)."""
        _, seq = await self._take()
        self._answered(seq, time.monotonic())

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """``async with bucket.slot(): <send one mint>``: its take-to-answer delay is measured."""
        began, seq = await self._take()
        try:
            yield
        finally:
            answered = time.monotonic()
            self._delays.append(answered - began)
            self._answered(seq, answered)

    def _answered(self, seq: int, at: float) -> None:
        """Store when start ``seq`` was answered (``at``: this process's monotonic clock).

        Stored as the database's clock when the write reads it, less the time from the answer
        to the write's start: never earlier than the answer, so the window guard is never
        early (late by the write's wait for a connection, which only spaces starts a little
        further). Measured when the program runs instead, the wait between the database's
        clock read and this process's turn to run it (tens of ms on a busy loop) counted
        twice and put answers before their own starts: a sliding window then held 101 mints.
        """
        async def store() -> None:
            ago = time.monotonic() - at
            await self._store.run(mint_answered(self.scope, seq, ago))
        self._background.start(store())

    async def _take(self) -> tuple[float, int]:
        # No waiting for this process's own background writes first: its pause is already
        # held here (``_paused_until``), and the answers the guard reads are a window old.
        async with self._lock:
            while True:
                local = self._paused_until - self._clock.now()
                if local > 0:
                    await self._clock.sleep(local)
                    continue
                interval = self.interval
                took = await self._store.run(mint_take(self.scope, interval, SLACK * interval,
                                                       self.limit, self.window_s,
                                                       self._answer_limit))
                grant = took.grant
                if grant.ok:
                    self.started += 1
                    if self._announced:
                        self._announced = False
                        self._emit(Resume(scope=self.scope))
                    return time.monotonic(), took.seq  # the grant, less the lock wait
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
                 observer: Observer | None = None, answer_limit_s: float = 60.0) -> None:
        self._store = store
        self._answer_limit = answer_limit_s
        self._clock = clock
        self._observer = observer
        self._background = Background()
        self._buckets: dict[str, SharedMintBucket] = {}

    def for_environment(self, env: EnvironmentConfig) -> SharedMintBucket:
        bucket = self._buckets.get(env.bucket)
        if bucket is None:
            bucket = SharedMintBucket(env.bucket, env.mint_limit, env.mint_window_s, self._store,
                                      clock=self._clock, observer=self._observer,
                                      background=self._background,
                                      answer_limit_s=self._answer_limit)
            self._buckets[env.bucket] = bucket
        return bucket

    async def settle(self) -> None:
        await self._background.settle()
