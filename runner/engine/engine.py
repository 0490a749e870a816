"""The engine: a job's rows, fairly scheduled, each user's actions in order, every step journaled.

    source ──(one pass per site)──> FairScheduler ──> workers ──> RowWorker ──> journal
             skipping rows whose         (bounded)    (asyncio     (mint, call,
             items are all final                       TaskGroup)   classify)

Each site's rows are read by their own pass over the source, a chunk at a time in a thread (no
blocking I/O on the event loop), and checked against the journal in the same chunks, so a resume
skips what is done without holding the job in memory. Workers take (site, row) units from the
scheduler; a row's actions run in order, journaled ``started`` before a request leaves and
``done`` before the next one starts. The first signal drains, the second cancels.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice

import structlog

from runner.aio import single_error, to_the_end
from runner.budgets import Clock, SystemClock
from runner.budgets.jira import JiraPacer
from runner.budgets.sharedjira import SharedJiraPacer
from runner.budgets.store import BudgetStore
from runner.config.configfile import Config
from runner.engine.rowworker import RowWorker
from runner.engine.scheduler import FairScheduler
from runner.engine.shutdown import Shutdown
from runner.engine.todo import Todo
from runner.engine.tools import engine_tools
from runner.errors import ExitCode
from runner.events import Emitter, NullObserver, Observer, RunFinished
from runner.job.jobfile import Job, Row
from runner.journal import Journal, RunHandle
from runner.journal.base import ItemRecord, ItemState, RunState, item_key

log = structlog.get_logger("runner.engine")

CHUNK = 256  # rows read, claimed and looked up in the journal at a time
FINAL = frozenset({ItemState.DONE, ItemState.FAILED, ItemState.SKIPPED, ItemState.BLOCKED})


@dataclass
class RunResult:
    """How a run ended, for the summary and the exit code."""

    run_id: str
    state: RunState
    counts: Mapping[ItemState, int]
    interrupted: bool = False
    blocked: Mapping[str, str] = field(default_factory=dict)  # environment -> diagnostic
    stop_signal: int | None = None  # the signal that interrupted the run, if one did

    @property
    def exit_code(self) -> ExitCode:
        """Interrupted (130 SIGINT, 143 SIGTERM), 3 an environment or items blocked, 1 items
        failed or uncertain, else 0."""
        if self.interrupted:
            return ExitCode.stopped_by(self.stop_signal)
        if self.blocked or self.counts.get(ItemState.BLOCKED, 0):
            return ExitCode.BLOCKED
        if self.counts.get(ItemState.FAILED, 0) or self.counts.get(ItemState.UNCERTAIN, 0):
            return ExitCode.FAILED
        return ExitCode.OK


class Engine:
    """Runs one job's run to its end, a drain, or a forced stop."""

    def __init__(
        self,
        config: Config,
        job: Job,
        journal: Journal,
        *,
        observer: Observer | None = None,
        clock: Clock | None = None,
        shutdown: Shutdown | None = None,
        budget_store: BudgetStore | None = None,
        serve_run: bool = False,
    ) -> None:
        """``budget_store``: the budgets every process on the journal shares; without one
        (a benchmark's memory journal, a test) the budgets are this process's own.
        ``serve_run``: a run serve's trigger started, which may spend the share of the quota
        the other runs keep for serve's (``[jira_budgets] serve_reserve``)."""
        self.config = config
        self.budget_store = budget_store
        self.serve_run = serve_run
        self.job = job
        self.journal = journal
        self.observer: Observer = observer or NullObserver()
        self.clock: Clock = clock or SystemClock()
        self.shutdown = shutdown or Shutdown()
        # The run's Jira budgets once it started, for the status page and /metrics to read.
        self.pacer: JiraPacer | SharedJiraPacer | None = None

    async def run(self, handle: RunHandle) -> RunResult:
        """Run to the end; whatever happens, the run is finished in the journal: a crash (a
        bug, a journal failure, a cancel) leaves it ``interrupted``, for the next run of the job
        to resume, never ``running``."""
        try:
            return await self._run(handle)
        except BaseException as exc:
            await self._abandon(handle.run_id, exc)
            raise

    async def _abandon(self, run_id: str, exc: BaseException) -> None:
        try:
            await to_the_end(self.journal.finish_run(run_id, RunState.INTERRUPTED))
        except Exception as failure:  # the journal itself may be what broke: the first error wins
            log.error("runner.run.not_finished", run=run_id, error=str(failure))
            return
        log.error("runner.run.crashed", run=run_id, error=f"{type(exc).__name__}: {exc}")

    async def _run(self, handle: RunHandle) -> RunResult:
        run_id = handle.run_id
        config, job = self.config, self.job
        concurrency = max(1, config.runner.concurrency)
        env_names = sorted({config.sites[s].environment for s in job.sites})
        weights = {s: job.site_weights.get(s, 1.0) for s in job.sites}
        scheduler: FairScheduler[tuple[Row, list[Todo]]] = FairScheduler(
            weights, workers=concurrency, buffer_per_site=max(8, 2 * concurrency)
        )
        async with engine_tools(config, env_names, concurrency=concurrency,
                                store=self.budget_store, clock=self.clock,
                                observer=self.observer, serve_run=self.serve_run) as tools:
            minters = tools.minters
            self.pacer = tools.pacer  # read by the status page
            executor = tools.executor
            worker = RowWorker(
                config,
                job,
                self.journal,
                run_id,
                executor,
                minters,
                observer=self.observer,
                shutdown=self.shutdown,
                deadline=self.clock.now() + config.retry_jira.deadline_s,
            )
            try:
                async with asyncio.TaskGroup() as tg:
                    tasks = [tg.create_task(self._produce(run_id, site, scheduler))
                             for site in job.sites]
                    tasks += [tg.create_task(self._work(scheduler, worker))
                              for _ in range(concurrency)]
                    self.shutdown.on_drain(scheduler.stop)
                    # A forced stop cancels the group's tasks, not this one: the group ends
                    # quietly (a cancelled child is no error) and the run is still finished.
                    self.shutdown.on_force(functools.partial(_cancel_all, tasks))
            except BaseExceptionGroup as group:
                raise single_error(group) from None
            # The last items' ``done`` were queued without waiting: durable before counting.
            await to_the_end(worker.settle())
            await tools.settle()
        blocked = {n: m.blocked.diagnostic for n, m in minters.items() if m.blocked is not None}
        return await self._finish(run_id, blocked)

    async def _finish(self, run_id: str, blocked: Mapping[str, str]) -> RunResult:
        interrupted = self.shutdown.draining or self.shutdown.forced
        run = await self.journal.get_run(run_id)
        by_state = run.by_state()
        open_items = by_state[ItemState.PENDING] + by_state[ItemState.STARTED]
        if interrupted and open_items:
            state = RunState.INTERRUPTED
        elif blocked:
            state = RunState.FAILED
        else:
            state = RunState.FINISHED
            interrupted = False
        await self.journal.finish_run(run_id, state)
        Emitter(self.observer)(RunFinished(run=run_id, state=str(state)))
        return RunResult(run_id, state, by_state, interrupted, dict(blocked),
                         self.shutdown.signal)

    async def _work(
        self, scheduler: FairScheduler[tuple[Row, list[Todo]]], worker: RowWorker
    ) -> None:
        while (got := await scheduler.next()) is not None:
            site, (row, todo) = got
            try:
                await worker.process(row, todo)
            finally:
                scheduler.done(site)

    async def _produce(
        self, run_id: str, site: str, scheduler: FairScheduler[tuple[Row, list[Todo]]]
    ) -> None:
        """Feed ``site``'s unfinished rows to the scheduler, a chunk at a time."""
        try:
            rows = _site_rows(self.job, site)
            while not self.shutdown.draining:
                chunk: list[Row] = await asyncio.to_thread(_take, rows)
                if not chunk:
                    break
                for row, todo in await self._unfinished(run_id, chunk):
                    await scheduler.put(site, (row, todo))
                scheduler.primed(site)
        finally:
            scheduler.close(site)

    async def _unfinished(
        self, run_id: str, chunk: Sequence[Row]
    ) -> list[tuple[Row, list[Todo]]]:
        keys = [row.key for row in chunk]
        mine = set(await self.journal.claim(run_id, keys))
        records: Mapping[str, ItemRecord] = await self.journal.states(run_id, keys)
        out: list[tuple[Row, list[Todo]]] = []
        for row in chunk:
            if row.key not in mine:
                continue
            todo = todo_of(self.job, row, records)
            if todo:
                out.append((row, todo))
        return out


def todo_of(job: Job, row: Row, records: Mapping[str, ItemRecord]) -> list[Todo]:
    """The row's actions not final in the journal (``records``: its items by key), in order."""
    todo = []
    for action in job.actions:
        record = records.get(item_key(row.key, action.index))
        prior = record.state if record is not None else ItemState.PENDING
        if prior not in FINAL:
            since = record.updated_at if record is not None else None
            todo.append(Todo(action, prior, since))
    return todo


def _cancel_all(tasks: Iterable[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()


def _site_rows(job: Job, site: str) -> Iterator[Row]:
    if len(job.sites) == 1:
        return iter(job.source.rows())
    return (row for row in job.source.rows() if row.site == site)


def _take(rows: Iterator[Row]) -> list[Row]:
    return list(islice(rows, CHUNK))
