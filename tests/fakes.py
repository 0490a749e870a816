"""Fakes shared by several test modules."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from runner.events import Event, SystemTokenWaiting

E = TypeVar("E", bound=Event)

EPOCH = 1_800_000_000.0


class FakeClock:
    """Time that moves only when a test says so, or by exactly what code sleeps on it.

    ``t`` is the monotonic reading (``monotonic``, and ``now`` of the runner's Clock); wall
    time is ``EPOCH + t`` (``wall``, and the sandbox's clock when called). ``sleep`` returns
    at once, recording what was asked for and calling ``on_sleep`` before time moves.
    """

    def __init__(self, start: float = 0.0) -> None:
        self.t = start
        self.sleeps: list[float] = []
        self.on_sleep: Callable[[], None] | None = None

    def monotonic(self) -> float:
        return self.t

    def now(self) -> float:
        return self.t

    def wall(self) -> float:
        return EPOCH + self.t

    def __call__(self) -> float:
        return self.wall()

    def advance(self, seconds: float) -> None:
        self.t += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if self.on_sleep is not None:
            self.on_sleep()
        self.t += seconds
        # Let other tasks run, as a real sleep would.
        await asyncio.sleep(0)


class Events:
    """An observer that records every event; ``on_waiting`` is called when the system-token
    source starts waiting (``SystemTokenWaiting``)."""

    def __init__(self) -> None:
        self.seen: list[Event] = []
        self.on_waiting: Callable[[], object] | None = None

    def event(self, ev: Event, /) -> None:
        self.seen.append(ev)
        if isinstance(ev, SystemTokenWaiting) and self.on_waiting is not None:
            self.on_waiting()

    def of(self, cls: type[E]) -> list[E]:
        """The events of class ``cls``, in order."""
        return [e for e in self.seen if isinstance(e, cls)]

    def count(self, cls: type[Event]) -> int:
        return len(self.of(cls))


async def all_tasks_blocked() -> None:
    """Return once every other task of the loop waits on something not yet ready.

    asyncio has no public ``wait_all_tasks_blocked``: this yields until the loop has no
    callback ready to run besides this task's own wake-up, which is when every other task sits
    on a future, a lock, a timer or a socket."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(0)
        # The loop's ready queue is private; it is the one place that says "nothing else can
        # run now", and a test helper may lean on it.
        if not loop._ready:  # type: ignore[attr-defined]
            return
