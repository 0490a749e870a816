"""Workers and lanes as the PostgreSQL journal holds them: what /metrics and the status page
show of the processes sharing its runs (``runner.cluster``).

Read when Prometheus scrapes or the page asks (``LanesReader.read``), never on a timer: a
few short statements (the workers alive, the open runs, each run's lanes). Every process on
the journal reads the same rows, so each one's /metrics shows the whole cluster (the
``holder`` label tells this process's lanes from the others'). A read that fails or takes
longer than ``READ_LIMIT_S`` keeps the last view, marked with the failure: a scrape is
never held up by a journal that went away.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
from psycopg_pool import PoolTimeout

from runner.engine.tools import process_id
from runner.errors import JournalError
from runner.journal import pglanes
from runner.journal.postgres import PostgresJournal

STALE_LEASES = 2.0  # a worker is alive while its heartbeat is younger than this many leases
READ_LIMIT_S = 2.0
KEEP_RUNS = 20  # open runs shown, oldest first (as metrics.py keeps the latest 20 runs)
NO_POSTGRES = ("Workers share runs through a PostgreSQL journal ([runner] journal = "
               "\"postgresql://...\"); this process's journal is SQLite, so it does its "
               "runs' work itself.")


@dataclass(frozen=True)
class WorkerView:
    worker: str
    host: str
    pid: int
    heartbeat_age_s: float
    lanes_held: int


@dataclass(frozen=True)
class RunLanes:
    run_id: str
    open: int  # lanes not done
    held: dict[str, int]  # worker ID -> lanes of the run it holds


@dataclass(frozen=True)
class LanesView:
    workers: list[WorkerView] = field(default_factory=list)
    runs: list[RunLanes] = field(default_factory=list)
    me: str | None = None  # this process's worker ID
    error: str | None = None  # why the latest read failed (the view is the one before)


class LanesReader:
    """Reads ``LanesView`` from ``journal``; ``lease_s``: the workers' lease."""

    def __init__(self, journal: PostgresJournal, lease_s: float, *,
                 me: Callable[[], str] = process_id) -> None:
        self.journal = journal
        self.stale_s = STALE_LEASES * lease_s
        self.me = me
        self.view = LanesView()

    async def read(self) -> LanesView:
        try:
            async with asyncio.timeout(READ_LIMIT_S):
                self.view = await self._read()
        except (TimeoutError, psycopg.Error, PoolTimeout, OSError, JournalError) as exc:
            why = "no answer in time" if isinstance(exc, TimeoutError) else type(exc).__name__
            self.view = LanesView(self.view.workers, self.view.runs, self.view.me,
                                  error=f"the journal could not be read ({why})")
        return self.view

    async def _read(self) -> LanesView:
        execute = self.journal.execute
        workers = [WorkerView(*row) for row in await execute(
            functools.partial(pglanes.live_workers, stale_s=self.stale_s))]
        runs = []
        for run in (await execute(pglanes.open_runs))[:KEEP_RUNS]:
            held = await execute(functools.partial(pglanes.lanes_of, run_id=run.run_id))
            left, _ = await execute(functools.partial(pglanes.lanes_left, run_id=run.run_id))
            runs.append(RunLanes(run.run_id, left, dict(held)))
        return LanesView(workers, runs, self.me())
