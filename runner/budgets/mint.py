"""The mint bucket: an app environment's mint budget, paced smoothly, paused on a 429.

Atlassian allows 1,000 mints a minute per OAuth client but does not say whether that is a fixed
window, a sliding window or a token bucket. A pacer that lets a full window through at once
(aiolimiter's default: its bucket starts full) overruns a sliding window as soon as the first
window's burst is followed by steady traffic. So starts are spaced evenly, one every
``window / limit`` seconds (stretched by a small ``headroom`` so that network jitter between
here and the gateway cannot pack ``limit + 1`` arrivals into one of its windows), and a log of
the last ``limit`` starts guards the rule "no more than ``limit`` starts in any ``window_s``".
Under all three algorithms that pace is accepted from the very first second.

Acquirers queue on a FIFO lock; only the head of the queue sleeps, until its slot. Cancelling
a waiter (at any point) costs no slot: a slot is taken only once the head's wait is over.

The gateway stamps a mint's arrival somewhere between our send and its answer, and the delay
varies (a busy event loop, the network). Even spacing alone leaves only ``headroom`` of slack
for that. So a mint sent through ``slot()`` also records when its answer came back, and the
window guard counts the ``limit``-th previous mint as lasting until its answer: a new mint
leaves at least ``window_s`` after that answer, so its arrival is surely more than a window
after the old one's, whatever the delays. With answers faster than the headroom this guard
never binds; it only slows the pace when answers are slow.

A rate-limited mint pauses the whole bucket (``pause_until``): every environment naming the
bucket waits, because the gateway's budget is per OAuth client, not per worker.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from runner.budgets import Clock, SystemClock
from runner.config.configfile import EnvironmentConfig
from runner.events import Emitter, Observer, Pause, Resume

# Default stretch of the pace over the nominal budget: 2% of a window is 1.2 s at Atlassian's
# 1,000/min, far above loopback or WAN jitter, and costs 2% of the budget.
DEFAULT_HEADROOM = 0.02


class _Start:
    """One mint start: when it was sent and, once known, when its answer came back."""

    __slots__ = ("at", "done", "ended")

    def __init__(self, at: float, ended: float | None = None) -> None:
        self.at = at
        self.ended = ended
        self.done = asyncio.Event()
        if ended is not None:
            self.done.set()

    def end(self, at: float) -> None:
        if self.ended is None:
            self.ended = at
            self.done.set()


class MintBucket:
    """At most ``limit`` mint starts in any ``window_s``, evenly spaced, shared by name."""

    def __init__(
        self,
        name: str,
        limit: int,
        window_s: float,
        *,
        clock: Clock | None = None,
        observer: Observer | None = None,
        headroom: float = DEFAULT_HEADROOM,
    ) -> None:
        if limit < 1 or window_s <= 0:
            raise ValueError("a mint bucket needs limit >= 1 and window_s > 0")
        self.name = name
        self.limit = limit
        self.window_s = window_s
        self.interval = window_s * (1.0 + max(0.0, headroom)) / limit
        self._clock: Clock = clock or SystemClock()
        self._emit = Emitter(observer)
        self._lock = asyncio.Lock()
        self._starts: deque[_Start] = deque(maxlen=limit)
        self._next_slot = -math.inf
        self._paused_until = -math.inf
        self._pause_announced = False
        self.started = 0

    @property
    def scope(self) -> str:
        return f"mint:{self.name}"

    @property
    def paused_until(self) -> float | None:
        """When the current pause ends (POSIX), or None when the bucket is not paused."""
        return self._paused_until if self._paused_until > self._clock.now() else None

    async def acquire(self) -> None:
        """Wait for this caller's turn (FIFO) and its slot, then count one mint start (its send
        time stands for its arrival; ``slot()`` does better when the answer can be awaited)."""
        start = await self._take()
        start.end(start.at)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """``async with bucket.slot(): <send one mint>``: a start whose answer time counts."""
        start = await self._take()
        try:
            yield
        finally:
            start.end(self._clock.now())

    async def _take(self) -> _Start:
        async with self._lock:
            while True:
                oldest = self._starts[0] if len(self._starts) == self.limit else None
                if oldest is not None and oldest.ended is None:
                    await oldest.done.wait()  # the window guard needs its answer time
                    continue
                now = self._clock.now()
                ready = max(self._next_slot, self._paused_until, self._window_guard())
                if now >= ready:
                    break
                # A pause made longer meanwhile is seen on the next pass: pauses only grow.
                await self._clock.sleep(ready - now)
            # Keep to the schedule despite sleep overshoot, but never bank idle time: after a
            # quiet spell the schedule restarts from now instead of letting a catch-up burst out.
            slot = ready if ready >= now - self.interval / 2 else now
            self._next_slot = slot + self.interval
            start = _Start(now)
            self._starts.append(start)
            self.started += 1
            if self._pause_announced:
                self._pause_announced = False
                self._emit(Resume(scope=self.scope))
            return start

    def _window_guard(self) -> float:
        """The earliest time a start keeps ``limit`` starts or fewer in every window."""
        if len(self._starts) < self.limit:
            return -math.inf
        oldest = self._starts[0]
        return (oldest.ended if oldest.ended is not None else oldest.at) + self.window_s

    def pause_until(self, until: float, reason: str) -> bool:
        """Hold every acquirer until ``until`` (POSIX). A later pause wins; an earlier one is
        ignored so that two mints limited at once don't shorten each other's wait. Returns
        whether the pause was extended."""
        if until <= self._paused_until:
            return False
        self._paused_until = until
        self._pause_announced = True
        self._emit(Pause(scope=self.scope, reason=reason, until=until))
        return True


class MintBuckets:
    """The process's mint buckets by name: environments that name the same bucket share it."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        observer: Observer | None = None,
        headroom: float = DEFAULT_HEADROOM,
    ) -> None:
        self._clock = clock
        self._observer = observer
        self._headroom = headroom
        self._buckets: dict[str, MintBucket] = {}

    def for_environment(self, env: EnvironmentConfig) -> MintBucket:
        """The bucket ``env`` names, made on first use. Environments sharing a bucket agree on
        its budget: ``load_config`` refuses a config where they don't."""
        bucket = self._buckets.get(env.bucket)
        if bucket is None:
            bucket = MintBucket(
                env.bucket,
                env.mint_limit,
                env.mint_window_s,
                clock=self._clock,
                observer=self._observer,
                headroom=self._headroom,
            )
            self._buckets[env.bucket] = bucket
        return bucket

    def __getitem__(self, name: str) -> MintBucket:
        return self._buckets[name]

    def __contains__(self, name: object) -> bool:
        return name in self._buckets
