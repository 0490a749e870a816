"""Fakes shared by the progress, display and report tests."""

from __future__ import annotations

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
