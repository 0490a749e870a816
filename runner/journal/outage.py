"""Waiting out a PostgreSQL database that went away (a restart, a failover, a cut connection).

Shared by the journal's reads, its writer and the budget store: one backoff, one bound.
"""

from __future__ import annotations

import asyncio
import time

# How long a read or write waits for a PostgreSQL database that went away mid-run, by default.
WAIT_S = 600.0

# Between tries while the database is away: short first (a restart takes seconds), then this.
RETRY_FIRST_S = 0.1
RETRY_MAX_S = 1.0


class Outage:
    """One outage: ``failed()`` at each failed try (True for the first, to say so once),
    ``over`` once ``wait_s`` has passed since the first, ``pause()`` between tries."""

    def __init__(self, wait_s: float) -> None:
        self.wait_s = wait_s
        self.since: float | None = None
        self._pause = RETRY_FIRST_S

    def failed(self) -> bool:
        if self.since is None:
            self.since = time.monotonic()
            return True
        return False

    @property
    def waited_s(self) -> float:
        return 0.0 if self.since is None else time.monotonic() - self.since

    @property
    def over(self) -> bool:
        return self.since is not None and self.waited_s >= self.wait_s

    async def pause(self) -> None:
        await asyncio.sleep(self._pause)  # waiting for a server to come back: nothing signals it
        self._pause = min(self._pause * 2, RETRY_MAX_S)
