"""The budget store in a PostgreSQL database: psycopg 3's asyncio API over a small pool.

Every program runs in one transaction and reads the server's ``clock_timestamp()`` first: every
process on every host judges its takes by that one clock. Each take is a conditional statement
on the budget's row, so the row's lock orders concurrent takes; rows are always taken in one
order (pauses read, then issue, burst key, tenant quota, app quota), so two takes never wait for
each other. No transaction stays open across anything but its own statements.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar, cast

import psycopg
import structlog
from psycopg import sql
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from runner.budgets.store.programs import ADDED_COLUMNS, SCHEMA, Program, Refused, Stmt
from runner.budgets.store.steps import FUNCTION, Steps, arguments, decode_row
from runner.budgets.store.where import shown
from runner.errors import JournalError
from runner.journal.outage import Outage, pooled

T = TypeVar("T")
log = structlog.get_logger("runner.budgets")
_PARAM = re.compile(r"(?<![:\w]):([a-z_]\w*)")
POOL_SIZE = 8
CONNECT_TIMEOUT_S = 10.0
# How long a take waits for a database that went away (a restart, a failover) by default.
WAIT_S = 120.0

# Any number: the advisory lock that lets one process at a time create the tables.
_SCHEMA_LOCK = 7_140_014


def render(stmt: Stmt) -> str:
    return _PARAM.sub(r"%(\1)s", stmt.sql)


def _inline(stmt: Stmt, conn: psycopg.AsyncConnection[Any]) -> str:
    """``stmt`` as ``budget_steps`` runs it: the clock as ``$1``, every other parameter a
    literal (a float as float8, the type it had as a bound parameter)."""
    def literal(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "now":
            return "$1"
        value = stmt.params[name]
        if isinstance(value, float):
            return f"CAST('{value!r}' AS DOUBLE PRECISION)"
        return sql.Literal(value).as_string(conn)
    return _PARAM.sub(literal, stmt.sql)


class PostgresStore:
    """Budgets in the PostgreSQL database at ``url``."""

    def __init__(self, url: str, pool: AsyncConnectionPool[Any], wait_s: float = WAIT_S) -> None:
        self.location = url
        self._pool = pool
        self._wait_s = wait_s

    @classmethod
    async def open(cls, url: str, *, wait_s: float = WAIT_S) -> PostgresStore:
        # One connection first: a server that isn't there fails now, with its own error,
        # rather than after the pool's retries.
        conn = await psycopg.AsyncConnection.connect(url, autocommit=True,
                                                     connect_timeout=int(CONNECT_TIMEOUT_S))
        async with conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            for ddl in (*SCHEMA, FUNCTION):
                await conn.execute(ddl)
            for table, column, definition in ADDED_COLUMNS:
                # Looked for first: ALTER TABLE locks the whole table even when it adds nothing.
                cur = await conn.execute(
                    "SELECT 1 FROM information_schema.columns WHERE table_schema ="
                    " current_schema() AND table_name = %s AND column_name = %s",
                    (table, column))
                if await cur.fetchone() is None:
                    await conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            url, min_size=1, max_size=POOL_SIZE, open=False,
            # A take's commit need not wait for the WAL's flush: a server crash may forget the
            # last takes (a step of pacing, Jira's headers correct the rest), never an item.
            # A take left open by a stopped process (SIGSTOP, a cut link) would hold its rows'
            # locks and stall every other process's takes: the server ends it after 5 s.
            kwargs={"autocommit": True, "options": "-c synchronous_commit=off "
                    "-c idle_in_transaction_session_timeout=5000"},
            timeout=CONNECT_TIMEOUT_S)
        await pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
        return cls(url, pool, wait_s)

    async def run(self, program: Program[T] | Steps[T]) -> T:
        """Run ``program`` in one transaction. A database that went away is waited for (up to
        ``wait_s``): a transaction cut short rolled back whole, so running it again is safe; one
        whose commit's answer was lost takes twice, which paces slower, never faster."""
        outage = Outage(self._wait_s)
        while True:
            try:
                result = await self._run_once(program)
            except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
                if outage.failed():
                    log.warning("runner.budgets.waiting", database=shown(self.location),
                                error=_first_line(exc))
                if outage.over:
                    raise self._failed(exc) from None
                await outage.pause()
                continue
            if outage.since is not None:
                log.info("runner.budgets.reconnected", database=shown(self.location),
                         waited_s=round(outage.waited_s, 1))
            return result

    def _failed(self, exc: BaseException) -> JournalError:
        return JournalError(f"the budgets' database {shown(self.location)} failed "
                            f"({_first_line(exc)}); once it is back, run the same command "
                            "again: it resumes")

    async def _run_once(self, program: Program[T] | Steps[T]) -> T:
        try:
            if isinstance(program, Steps):
                return await self._run_steps(program)
            async with pooled(self._pool) as conn, conn.transaction():
                cur = await conn.execute("SELECT extract(epoch from clock_timestamp())::float8")
                now_row = await cur.fetchone()
                assert now_row is not None
                gen = program(float(now_row[0]))
                try:
                    stmt = next(gen)
                    while True:
                        cur = await conn.execute(render(stmt), stmt.params)
                        row = await cur.fetchone() if cur.description is not None else None
                        stmt = gen.send(row)
                except StopIteration as done:
                    return cast(T, done.value)
        except Refused as refused:
            return cast(T, refused.grant)
        except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout):
            raise  # the database went away: ``run`` waits for it
        except psycopg.Error as exc:
            raise self._failed(exc) from None

    async def _run_steps(self, steps: Steps[T]) -> T:
        """The whole take in one statement, its own transaction (``budget_steps``)."""
        async with pooled(self._pool) as conn:
            cur = await conn.execute("SELECT * FROM budget_steps(%s, %s, %s)",
                                     arguments(steps, lambda stmt: _inline(stmt, conn)))
            answer = await cur.fetchone()
        assert answer is not None
        now, refused_at, why, rows = answer
        return steps.answer(float(now), [decode_row(r) for r in rows or ()], refused_at,
                            decode_row(why))

    async def close(self) -> None:
        await self._pool.close()


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
