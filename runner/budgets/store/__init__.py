"""Budgets every process on one journal shares: each decision one atomic statement in a database.

A process that paces in memory paces as if it were alone; two of them on one environment spend
its mint budget twice. So when a journal is configured, every budget lives in rows of its
database and every take is a conditional ``UPDATE``/``INSERT ... ON CONFLICT`` judged by the
database's clock (SQLite: the host's; PostgreSQL: ``clock_timestamp()``), inside one short
transaction per request (a request takes from up to four budgets: all or none). Nothing is
leased: a process that dies holds only what it took for requests already sent.

``open_store(location)`` picks the backend from the journal setting: a path is SQLite (the
journal's own file, a connection of its own), a ``postgresql://``/``postgres://`` URL is
PostgreSQL. The statements live in ``runner.budgets.store.programs``, written once for both:
each take is a generator of statements that a backend's driver runs in one transaction.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

from runner.budgets.store.programs import Program
from runner.budgets.store.steps import Steps
from runner.budgets.store.where import is_url, shown
from runner.config.configfile import RunnerSettings
from runner.errors import JournalError
from runner.journal.explain import explain

if TYPE_CHECKING:
    from types import TracebackType

T = TypeVar("T")


class BudgetStore(Protocol):
    """A database that runs budget programs, each in one transaction, judged by its clock."""

    location: str

    async def run(self, program: Program[T] | Steps[T]) -> T: ...

    async def close(self) -> None: ...


class StoreContext:
    """``async with open_store(location) as store``: opened on entry, closed on exit."""

    def __init__(self, location: str | Path, wait_s: float | None = None) -> None:
        self._location = location
        self._wait_s = wait_s
        self._store: BudgetStore | None = None

    async def __aenter__(self) -> BudgetStore:
        self._store = await connect(self._location, wait_s=self._wait_s)
        return self._store

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._store is not None:
            await self._store.close()


async def connect(location: str | Path, *, wait_s: float | None = None) -> BudgetStore:
    """The budget store at the journal setting ``location``: the one place the choice is made.
    One that can't be opened is a ``JournalError`` (exit 6) naming it, password left out."""
    if is_url(location):
        return await _connect_postgres(str(location), wait_s)
    from runner.budgets.store.sqlite import SqliteStore

    try:
        return await SqliteStore.open(Path(location))
    except (OSError, sqlite3.Error) as exc:
        raise explain(Path(location), exc) from None  # the journal's file: its failure


async def _connect_postgres(location: str, wait_s: float | None) -> BudgetStore:
    # psycopg imported here: it takes a good part of a command's start-up, and most budgets
    # live in a SQLite journal.
    import psycopg
    from psycopg_pool import PoolTimeout

    from runner.budgets.store.postgres import PostgresStore

    try:
        if wait_s is None:
            return await PostgresStore.open(location)
        return await PostgresStore.open(location, wait_s=wait_s)
    except (OSError, sqlite3.Error, psycopg.Error, PoolTimeout) as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise JournalError(f"the budgets' database {shown(location)} can't be opened "
                           f"({type(exc).__name__}: {first}); check that it is reachable and "
                           f"writable, then run the same command again") from None


def open_store(location: str | Path, *, wait_s: float | None = None) -> StoreContext:
    """``wait_s``: how long a take waits for a PostgreSQL database that went away mid-run."""
    return StoreContext(location, wait_s)


def location_of(settings: RunnerSettings) -> str | Path:
    """Where the shared budgets of a config live: ``[runner] budgets``, else the journal."""
    if settings.budgets is not None:
        return settings.budgets
    return settings.journal_url if settings.journal_url is not None else settings.journal


__all__ = ["BudgetStore", "connect", "is_url", "location_of", "open_store"]
