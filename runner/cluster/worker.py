"""A worker: claims lanes of the journal's open runs, works each lane's rows in order, renews
its leases, and gives its lanes back when it drains.

    claim (fair order) ──> a task per lane ──> rows in order ──> RowWorker ──> fenced writes
          ^                                                                      |
          └──────── a lane done, given back or lost wakes the claimer ──────────┘
    heartbeat: every lease/4 renew the leases it holds; a lane missing from the answer is lost

A lane's task reads the lane's rows and their items (an item ``started`` under an older fence
is judged as on resume: a create looked up by its marker, an idempotent item sent again),
hands each row to the run's ``RowWorker`` with the lease's gate, and ends the lane ``done``
through the journal's writer, so the lane is finished only after its last item's ``done``.
The first signal drains (waiting items are dropped, lanes given back at once), the second
cancels.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass

import psycopg
import structlog
from psycopg_pool import PoolTimeout

from runner.aio import single_error
from runner.budgets import Clock, SystemClock
from runner.cluster.lease import Lane, Lease, LeaseBook
from runner.cluster.placed import Placement, placed_run
from runner.cluster.settings import ClusterSettings
from runner.config.configfile import Config
from runner.engine.engine import todo_of
from runner.engine.rowworker import RowWorker
from runner.engine.shutdown import Shutdown
from runner.engine.tools import Tools, process_id
from runner.errors import JobError, LaneLostError
from runner.events import Emitter, LaneLeaseLost, LaneTakenOver, Observer
from runner.job.jobfile import Job, parse_job
from runner.job.selection import from_identity
from runner.job.sources import Row
from runner.journal import pglanes
from runner.journal.pglanes import OpenRun
from runner.journal.postgres import PostgresJournal

log = structlog.get_logger("runner.cluster")

MAX_CLAIM = 16  # lanes asked for in one claim
_WORKERS = itertools.count()


@dataclass
class RunWork:
    run_id: str
    job: Job
    rows: RowWorker


class Worker:
    """Works lanes until drained; ``only``: the one run it works on (``run`` on PostgreSQL),
    until that run is no longer running."""

    def __init__(self, config: Config, journal: PostgresJournal, tools: Tools,
                 settings: ClusterSettings, *, observer: Observer, shutdown: Shutdown,
                 clock: Clock | None = None, only: str | None = None,
                 jobs: Mapping[str, Job] | None = None):
        self.config = config
        self.journal = journal
        self.tools = tools
        self.settings = settings
        self.observer = observer
        self._emit = Emitter(observer)
        self.shutdown = shutdown
        self.clock: Clock = clock or SystemClock()
        self.only = only
        # One ID per worker: a process running several (serve, a benchmark) numbers the rest.
        n = next(_WORKERS)
        self.id = process_id() if n == 0 else f"{process_id()}.{n}"
        self.book = LeaseBook(self.id, margin_s=settings.margin_s, on_lost=self._lost)
        self.runs: dict[str, RunWork | None] = {}  # None: a run this worker can't do
        self._jobs = dict(jobs or {})
        self._tasks: dict[Lane, asyncio.Task[None]] = {}
        self._claiming = asyncio.Lock()
        self._wake = asyncio.Event()
        self.lanes_done = 0

    # -- the worker's life --------------------------------------------------------------------

    async def run(self) -> None:
        await self.journal.execute(functools.partial(
            pglanes.register_worker, worker_id=self.id, host=socket.gethostname(),
            pid=os.getpid(), proc_start=proc_start(os.getpid())))
        log.info("runner.worker.started", worker=self.id, lease_s=self.settings.lease_s)
        beat = asyncio.create_task(self._heartbeat(), name="lease-heartbeat")
        self.shutdown.on_drain(self._wake.set)
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                loop = tg.create_task(self._claim_loop())
                self.shutdown.on_force(functools.partial(self._cancel_all, loop))
        except BaseExceptionGroup as group:
            raise single_error(group) from None
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
            for work in self.runs.values():
                if work is not None:
                    await work.rows.settle()
                    self.journal.leave(work.run_id)
        await self.journal.write(functools.partial(pglanes.stop_worker, worker_id=self.id))

    def _cancel_all(self, loop: asyncio.Task[None]) -> None:
        loop.cancel()
        for task in self._tasks.values():
            task.cancel()

    async def _claim_loop(self) -> None:
        looked = -float("inf")
        while not self.shutdown.draining:
            if self.book.clock() - looked >= self.settings.renew_s:
                looked = self.book.clock()
                await self._expire_gone_here()
            runs = await self._open_runs()
            if self.only is not None and self.only not in runs:
                return  # finished (or stopped) by whoever saw it end
            got = await self._claim(list(runs))
            if not got and not self._tasks and self.only is not None:
                await self.journal.execute(functools.partial(
                    pglanes.finish_if_complete, run_id=self.only, now=time.time()))
            if not got:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.settings.poll_s):
                        await self._wake.wait()
        # Drained: the lanes' tasks stop at their next item and give their lanes back.

    async def _claim(self, run_ids: list[str]) -> int:
        concurrency = max(1, self.config.runner.concurrency)
        free = concurrency - len(self._tasks)
        if free <= 0 or not run_ids:
            return 0
        async with self._claiming:
            asked = self.book.clock()  # the lease book's monotonic clock
            grants = await self.journal.execute(functools.partial(
                pglanes.claim, worker_id=self.id, run_ids=run_ids, n=min(free, MAX_CLAIM),
                lease_s=self.settings.lease_s))
            for grant in grants:
                lease = self.book.add(grant, asked)
                work = self.runs[grant.run_id]
                assert work is not None
                if grant.fence > 1:
                    self._emit(LaneTakenOver(run=grant.run_id, site=grant.site,
                                             account=grant.account_id, fence=grant.fence))
                self._tasks[grant.lane] = self._tg.create_task(self._lane(work, lease))
        return len(grants)

    async def _open_runs(self) -> dict[str, RunWork]:
        out: dict[str, RunWork] = {}
        for run in await self.journal.execute(pglanes.open_runs):
            if self.only is not None and run.run_id != self.only:
                continue
            if run.run_id not in self.runs:
                self.runs[run.run_id] = self._prepare(run)
            work = self.runs[run.run_id]
            if work is not None:
                out[run.run_id] = work
        return out

    def _prepare(self, run: OpenRun) -> RunWork | None:
        config, tools = self.config, self.tools
        job = self._jobs.get(run.run_id)
        if job is None:
            path, _ = from_identity(run.job_path)
            try:
                if run.placed is not None:  # started by serve: its own site and token
                    job, config = placed_run(self.config, Placement.loads(run.placed),
                                             run.job_text, path, run.columns, self.journal.url)
                    envs = {config.sites[s].environment for s in job.sites}
                    tools = self.tools.for_config(config, envs, clock=self.clock,
                                                  observer=self.observer, serve_run=True)
                else:
                    job = parse_job(run.job_text.encode(), path, config, stored=run.columns)
            except JobError as exc:
                log.warning("runner.worker.run_skipped", run=run.run_id,
                            why=f"its job does not fit this worker's config: {exc}")
                return None
        missing = [s for s in job.sites
                   if config.sites[s].environment not in tools.minters]
        if missing:
            log.warning("runner.worker.run_skipped", run=run.run_id,
                        why=f"no environment for the sites {', '.join(missing)}")
            return None
        rows = RowWorker(config, job, self.journal, run.run_id, tools.executor,
                         tools.minters, observer=self.observer, shutdown=self.shutdown,
                         deadline=self.clock.now() + config.retry_jira.deadline_s,
                         gate=self.book.gate, last_check=self.book.last_check)
        self.journal.join(run.run_id, self.book.guard)
        log.info("runner.worker.joined", run=run.run_id, job=job.name)
        return RunWork(run.run_id, job, rows)

    # -- one lane -----------------------------------------------------------------------------

    async def _lane(self, work: RunWork, lease: Lease) -> None:
        run_id, site, account = lease.lane
        try:
            while True:
                rows, records = await self.journal.execute(functools.partial(
                    pglanes.lane_work, lane=lease.lane))
                for stored in rows:
                    if self.shutdown.draining or lease.lost is not None:
                        break
                    row = Row(stored.seq, stored.row_key, account, site, stored.fields,
                              stored.line, f"run {run_id}")
                    todo = todo_of(work.job, row, records)
                    if todo:
                        await work.rows.process(row, todo)
                    if self.shutdown.draining or lease.lost is not None:
                        break  # the row may be cut short: the lane is not done
                else:
                    if lease.lost is not None:
                        return
                    ended = await self.journal.write(functools.partial(
                        pglanes.finish_lane, worker_id=self.id, lane=lease.lane,
                        fence=lease.fence, rows=len(rows)))
                    if ended == "more":
                        continue
                    if ended in ("done", "last"):
                        self.lanes_done += 1
                    if ended == "last" and await self.journal.write(functools.partial(
                            pglanes.finish_if_complete, run_id=run_id, now=time.time())):
                        log.info("runner.worker.run_finished", run=run_id, worker=self.id)
                    return
                if lease.lost is None:  # drained: back in line for any worker, at once
                    await self.journal.write(functools.partial(
                        pglanes.release_lane, worker_id=self.id, lane=lease.lane,
                        fence=lease.fence))
                return
        except LaneLostError:
            return
        finally:
            self.book.drop(lease.lane)
            self._tasks.pop(lease.lane, None)
            self._wake.set()

    def _lost(self, lease: Lease) -> None:
        self._emit(LaneLeaseLost(run=lease.lane[0], site=lease.lane[1], account=lease.lane[2],
                                 fence=lease.fence, why=lease.lost or ""))
        work = self.runs.get(lease.lane[0])
        if work is not None:
            work.rows.drop_waiting((lease.lane[1], lease.lane[2]))

    # -- leases -------------------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        """Renew every lease every lease/4 on a connection of its own; a renewal that can't
        reach the database is tried again soon, and leases it could not renew run out on the
        worker's own clock."""
        conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        pause = self.settings.renew_s
        while True:
            await asyncio.sleep(pause)
            self.book.expire()
            try:
                async with asyncio.timeout(self.settings.renew_s):
                    if conn is None or conn.closed:
                        conn = await self.journal.connect()
                    async with self._claiming:
                        asked = self.book.clock()  # the lease book's monotonic clock
                        held = [(lease.lane, lease.fence) for lease in self.book.held()
                                if lease.lost is None]
                        answer = await pglanes.renew(conn, self.id, held)
                        self.book.renewed(answer, asked)
                pause = self.settings.renew_s
            except (TimeoutError, psycopg.Error, PoolTimeout, OSError) as exc:
                log.warning("runner.worker.renew_failed", worker=self.id,
                            error=" ".join(str(exc).split())[:200] or type(exc).__name__)
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close()
                conn = None
                pause = min(1.0, self.settings.renew_s)

    async def _expire_gone_here(self) -> None:
        """Workers of this host whose process is gone (killed, crashed) leave their lanes to
        be claimed now, not at the end of their lease: a process that no longer exists sends
        nothing."""
        here = socket.gethostname()
        rows = await self.journal.execute(functools.partial(pglanes.workers_on, host=here))
        gone = [wid for wid, pid, start in rows
                if wid != self.id and proc_start(pid) != start]
        if not gone:
            return
        freed = await self.journal.execute(functools.partial(pglanes.expire_gone,
                                                             worker_ids=gone))
        log.info("runner.worker.gone_expired", workers=len(gone), lanes=freed)


def proc_start(pid: int) -> str:
    """The process's start time in clock ticks since boot (``/proc``), which tells a process
    from a later one given the same pid; "" when it does not exist."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            stat = f.read()
    except OSError:
        return ""
    return stat.rpartition(")")[2].split()[19]
