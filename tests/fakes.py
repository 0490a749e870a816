"""Fakes shared by several test modules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from runner.events import Event, SystemTokenWaiting
from runner.events_legacy import as_event

E = TypeVar("E", bound=Event)

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
    source starts waiting (``SystemTokenWaiting``)."""

    def __init__(self) -> None:
        self.seen: list[Event] = []
        self.on_waiting: Callable[[], object] | None = None

    def event(self, ev: Event | str, /, **fields: Any) -> None:
        ev = as_event(ev, fields)  # TEMPORARY: old-style calls (runner.events_legacy)
        self.seen.append(ev)
        if isinstance(ev, SystemTokenWaiting) and self.on_waiting is not None:
            self.on_waiting()

    def of(self, cls: type[E]) -> list[E]:
        """The events of class ``cls``, in order."""
        return [e for e in self.seen if isinstance(e, cls)]

    def count(self, cls: type[Event]) -> int:
        return len(self.of(cls))
