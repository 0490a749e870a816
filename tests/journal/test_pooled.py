"""A pooled connection after the PostgreSQL server restarted: the first dead connection found
has the pool's other idle connections checked at once, so the callers after it get live ones
(the pool's own check at checkout waits longer after each dead one: seconds, then minutes)."""

from __future__ import annotations

import contextlib

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from runner.journal.outage import pooled
from tests.pgdb import can_restart, restart_server

pytestmark = [pytest.mark.slow, pytest.mark.restarts_postgres]


async def test_after_a_restart_one_dead_connection_clears_the_pool_of_the_others(
    pg_url: str,
) -> None:
    """Four idle connections, then a restart: the first use fails (its connection died with
    the server), and all four connections the pool hands out after it work."""
    can_restart()
    pool: AsyncConnectionPool[psycopg.AsyncConnection[tuple[object, ...]]] = \
        AsyncConnectionPool(pg_url, min_size=4, max_size=4, open=False,
                            kwargs={"autocommit": True})
    await pool.open(wait=True, timeout=30.0)
    try:
        await restart_server()
        with pytest.raises(psycopg.OperationalError):
            async with pooled(pool) as conn:
                await conn.execute("SELECT 1")
        async with contextlib.AsyncExitStack() as held:
            conns = [await held.enter_async_context(pooled(pool, wait_s=30.0))
                     for _ in range(4)]
            for conn in conns:
                await conn.execute("SELECT 1")
    finally:
        await pool.close()
