"""The budget store in the journal's SQLite file: a connection of its own, on a thread of its own.

Every program runs inside ``BEGIN IMMEDIATE`` (SQLite's one writer lock, so programs of every
process on the file run one at a time) and reads the host's clock once it holds the lock: every
process on one host shares that clock, and the lock orders their takes. WAL lets the journal's
readers go on meanwhile; ``synchronous = NORMAL`` skips the fsync per take (a budget row lost to
a power cut costs at most a pacing step, never a journaled item).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar, cast

from runner.budgets.store.programs import ADDED_COLUMNS, SCHEMA, Program, Refused, Stmt
from runner.budgets.store.steps import Steps, run_sqlite
from runner.journal.explain import explain

T = TypeVar("T")
# How long a take waits for another process's lock before the failure is reported.
BUSY_TIMEOUT_S = 30.0
LOCK_POLL_S = 0.0005


def _begin(conn: sqlite3.Connection) -> None:
    """``BEGIN IMMEDIATE``, looking for the lock again every ``LOCK_POLL_S`` while another
    process (or the journal's writer) holds it, for up to ``BUSY_TIMEOUT_S``."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(LOCK_POLL_S)


def render(stmt: Stmt) -> str:
    # SQLite's names for PostgreSQL's: a row's address, and no row locks (one writer).
    return (stmt.sql.replace("GREATEST(", "max(").replace("LEAST(", "min(")
            .replace("ctid", "rowid").replace(" FOR UPDATE SKIP LOCKED", ""))


class SqliteStore:
    """Budgets in the SQLite file at ``path`` (the journal's)."""

    def __init__(self, path: Path) -> None:
        self.location = str(path)
        self._path = path
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="budget-store")
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    @classmethod
    async def open(cls, path: Path) -> SqliteStore:
        store = cls(path)
        await store._call(store._connect)
        return store

    def _connect(self) -> None:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False,
                               timeout=BUSY_TIMEOUT_S)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        # From here the lock is waited for by ``_begin``: SQLite's own busy handler sleeps
        # 1, 2, 5, 10... ms between looks, which a mint slot of 60 ms can't afford.
        conn.execute("PRAGMA busy_timeout = 0")
        _begin(conn)
        for ddl in SCHEMA:
            conn.execute(ddl)
        for table, column, definition in ADDED_COLUMNS:
            if column not in {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
        conn.execute("COMMIT")
        self._conn = conn

    async def _call(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def run(self, program: Program[T] | Steps[T]) -> T:
        try:
            return cast(T, await self._call(self._run, program))
        except sqlite3.Error as exc:
            # The budgets live in the journal's file: its failure is the journal's, said so.
            raise explain(self._path, exc) from None

    def _run(self, program: Program[T] | Steps[T]) -> T:
        conn = self._conn
        assert conn is not None, "the store is closed"
        _begin(conn)
        try:
            now = time.time()
            if isinstance(program, Steps):
                def fetch(stmt: Stmt) -> Any:
                    return conn.execute(render(stmt), {**stmt.params, "now": now}).fetchone()
                answer, refused = run_sqlite(program, now, fetch)
                conn.execute("ROLLBACK" if refused else "COMMIT")
                return answer
            gen = program(now)
            try:
                stmt = next(gen)
                while True:
                    row = conn.execute(render(stmt), stmt.params).fetchone()
                    stmt = gen.send(row)
            except StopIteration as done:
                conn.execute("COMMIT")
                return cast(T, done.value)
        except Refused as refused:
            conn.execute("ROLLBACK")
            return cast(T, refused.grant)
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._call(conn.close)
        self._thread.shutdown(wait=True)
