"""The PostgreSQL journal's reads: each one short statement or two on a pooled connection
(``psycopg_pool``), waiting out a database that went away. A part of ``PostgresJournal``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from runner.errors import JournalError, RunNotFoundError
from runner.events import Emitter, JournalReconnected, JournalWaiting
from runner.journal import pgqueries as q
from runner.journal.base import PROBLEM_STATES, ItemRecord, RunCounts, RunRecord
from runner.journal.outage import Outage, pooled
from runner.journal.rules import job_identity, parse_states

T = TypeVar("T")
Conn = q.Conn

PAGE_SIZE = 500


class PgReads:
    where: str
    _pool: AsyncConnectionPool[Conn] | None
    _wait_s: float
    _emit: Emitter
    _explain: Callable[[Exception], Exception]  # psycopg's error as the journal's

    async def execute(self, fn: Callable[[Conn], Awaitable[T]], *, wait: bool = True) -> T:
        """``fn`` on a pooled connection (one short statement or two, autocommit); with
        ``wait`` a database that went away is waited for, else its error is raised at once
        (``psycopg.OperationalError`` or ``PoolTimeout``)."""
        if wait:
            return await self._read(fn)
        if self._pool is None:
            raise JournalError("the journal is not open (use `async with PostgresJournal(...)`)")
        async with pooled(self._pool, wait_s=5.0) as conn:
            return await fn(conn)

    async def _read(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """``fn`` on a pooled connection; a database that went away is waited for."""
        if self._pool is None:
            raise JournalError("the journal is not open (use `async with PostgresJournal(...)`)")
        pool = self._pool
        outage = Outage(self._wait_s)
        while True:
            try:
                async with pooled(pool) as conn:
                    value = await fn(conn)
                break
            except (psycopg.OperationalError, PoolTimeout) as exc:
                if outage.failed():
                    self._emit(JournalWaiting(journal=self.where, reason=one_line(exc),
                                              wait_s=self._wait_s))
                if outage.over:
                    raise JournalError(
                        f"journal {self.where}: can't be reached ({one_line(exc)}); start the "
                        "database, then run the same command again to resume"
                    ) from None
                await outage.pause()
            except psycopg.Error as exc:
                raise self._explain(exc) from None
        if outage.since is not None:
            self._emit(JournalReconnected(journal=self.where, waited_s=round(outage.waited_s, 1)))
        return value

    # -- reads --------------------------------------------------------------------------------

    async def states(self, run_id: str, row_keys: Sequence[str]) -> Mapping[str, ItemRecord]:
        keys = list(dict.fromkeys(row_keys))
        return await self._read(lambda conn: q.item_states(conn, run_id, keys))

    async def records(
        self, run_id: str, states: Sequence[str] = PROBLEM_STATES
    ) -> AsyncIterator[ItemRecord]:
        for state in parse_states(states):
            after: tuple[str, int] = ("", -1)
            while True:
                page = await self._read(
                    lambda conn, a=after, s=state: q.item_page(conn, run_id, s, a, PAGE_SIZE)  # type: ignore[misc]
                )
                for record in page:
                    yield record
                if len(page) < PAGE_SIZE:
                    break
                after = (page[-1].row_key, page[-1].action_index)

    async def get_run(self, run_id: str) -> RunRecord:
        return await self._read(lambda conn: self._run(conn, run_id))

    async def latest_run(self, job_path: str) -> RunRecord | None:
        ident = job_identity(job_path)
        return await self._read(lambda conn: q.latest_run(conn, ident))

    async def done_by_action(self, run_id: str) -> Mapping[int, int]:
        return await self._read(lambda conn: q.done_by_action(conn, run_id))

    async def runs(self, limit: int = 20) -> Sequence[RunRecord]:
        return await self._read(lambda conn: q.latest_runs(conn, limit))

    async def counts(self, run_id: str) -> RunCounts:
        async def read(conn: Conn) -> RunCounts:
            return await q.run_counts(conn, await self._run(conn, run_id))

        return await self._read(read)

    # -- helpers ------------------------------------------------------------------------------

    async def _run(self, conn: Conn, run_id: str) -> RunRecord:
        run = await q.get_run(conn, run_id)
        if run is None:
            raise RunNotFoundError(run_id, self.where)
        return run


def one_line(exc: BaseException) -> str:
    """psycopg's message on one line (libpq's spans several), cut short."""
    return (" ".join(str(exc).split()) or type(exc).__name__)[:300]
