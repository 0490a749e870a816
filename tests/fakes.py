"""Fakes shared by several test modules."""

from __future__ import annotations

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
