"""Waiting out a PostgreSQL database that went away (a restart, a failover, a cut connection).

Shared by the journal's reads, its writer, the budget store and serve's database: one backoff,
one bound, and one way to take a pooled connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

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


@contextlib.asynccontextmanager
async def pooled(pool: AsyncConnectionPool[Any], wait_s: float | None = None
                 ) -> AsyncIterator[Any]:
    """A connection of ``pool`` (waiting up to ``wait_s`` for one, else the pool's timeout);
    one found dead (the server restarted) has every idle connection of the pool checked at
    once, so the callers after it get live ones.

    Not the pool's ``check`` at every checkout: psycopg_pool waits between failed checks,
    doubling each time (1, 2, 4 ... s within one request), so after a restart a request that
    met the pool's dead connections one by one waited seconds, and after two restarts minutes.
    """
    try:
        async with pool.connection(timeout=wait_s) as conn:
            yield conn
    except (psycopg.OperationalError, psycopg.InterfaceError):
        with contextlib.suppress(Exception):  # the caller's error is the one to report
            await pool.check()
        raise
