"""Fakes shared by several test modules."""

from __future__ import annotations

import asyncio
from typing import Any

EPOCH = 1_800_000_000.0


class FakeClock:
    """Monotonic and wall time that move only when a test says so."""

    def __init__(self) -> None:
        self.t = 0.0

    def monotonic(self) -> float:
        return self.t

    def wall(self) -> float:
        return EPOCH + self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class Events:
    """An observer that records every event; ``on_waiting`` is called when the system-token
    source starts waiting (``system_token.waiting``)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []
        self.on_waiting: Any = None

    def event(self, name: str, /, **fields: Any) -> None:
        self.seen.append((name, fields))
        if name == "system_token.waiting" and self.on_waiting is not None:
            self.on_waiting()

    def named(self, name: str) -> list[dict[str, Any]]:
        return [f for n, f in self.seen if n == name]

    def count(self, name: str) -> int:
        return sum(1 for n, _ in self.seen if n == name)


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
