"""Budgets: the limits the runner stays inside, and the clock they all keep time by.

Every budget waits on a ``Clock`` rather than on ``time``/``asyncio.sleep`` directly, so a test
about time can drive it with ``ManualClock`` instead of waiting for real seconds. Clock time is
POSIX seconds (wall time), because the pauses budgets obey come from servers as wall times
(``X-RateLimit-Reset``) and the events they report carry wall times too.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """Wall-clock time (POSIX seconds) and a way to wait on it."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class ManualClock:
    """A clock for tests about time: ``sleep`` returns at once, moving time forward.

    A sleeper wakes at the later of its own wake-up time and the current time, so time never
    runs backwards. Exact when one task at a time sleeps, which is how the pacers here wait
    (only the head of their queue sleeps); ``advance`` moves time for a test's own steps.
    """

    def __init__(self, start: float = 1_000_000.0) -> None:
        self._now = start
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += max(0.0, seconds)

    async def sleep(self, seconds: float) -> None:
        wake = self._now + max(0.0, seconds)
        self.sleeps.append(max(0.0, seconds))
        # Let other tasks run, as a real sleep would, before time moves.
        await asyncio.sleep(0)
        self._now = max(self._now, wake)


__all__ = ["Clock", "ManualClock", "SystemClock"]
