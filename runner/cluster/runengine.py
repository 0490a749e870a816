"""``forge-runner run`` on a PostgreSQL journal: load the run's rows, then work on it as a
worker does, beside any ``forge-runner worker`` processes, until the run ends.

The same face as ``Engine`` (``run(handle) -> RunResult``), so the command treats both alike.
The process that started the run holds its job's lock until it leaves (a second ``run`` of the
job exits 4; more hands come from ``forge-runner worker``). When it drains, its lanes go back
in line; the run is left ``interrupted`` unless another worker is still working on it, in which
case the run goes on and the last lane's worker finishes it. ``detach`` loads the rows and
leaves the run to the workers. serve on PostgreSQL runs the runs its triggers start this way,
``placed`` on the installation's site, so any worker can take their lanes
(``runner.cluster.placed``).
"""

from __future__ import annotations

import time

import structlog

from runner.aio import to_the_end
from runner.budgets import Clock, SystemClock
from runner.budgets.store import BudgetStore
from runner.cluster.loader import load_run
from runner.cluster.settings import ClusterSettings, cluster_settings
from runner.cluster.worker import Worker
from runner.config.configfile import Config
from runner.engine.engine import RunResult
from runner.engine.shutdown import Shutdown
from runner.engine.tools import engine_tools
from runner.events import Emitter, NullObserver, Observer, RunFinished
from runner.job.jobfile import Job
from runner.journal import pglanes
from runner.journal.base import ItemState, RunHandle, RunState
from runner.journal.postgres import PostgresJournal

log = structlog.get_logger("runner.cluster")


class ClusterEngine:
    def __init__(self, config: Config, job: Job, journal: PostgresJournal, *,
                 observer: Observer | None = None, clock: Clock | None = None,
                 shutdown: Shutdown | None = None, budget_store: BudgetStore | None = None,
                 settings: ClusterSettings | None = None, detach: bool = False,
                 placed: str | None = None):
        self.config = config
        self.job = job
        self.journal = journal
        self.observer: Observer = observer or NullObserver()
        self.clock: Clock = clock or SystemClock()
        self.shutdown = shutdown or Shutdown()
        self.budget_store = budget_store
        self.settings = settings or cluster_settings(config)
        self.detach = detach
        self.placed = placed  # a run serve started: its site, for any worker to rebuild it
        self.pacer = None  # set once the run's tools exist (the status page reads it)
        self.worker: Worker | None = None
        self.blocked: dict[str, str] = {}  # environment -> diagnostic
        self._loaded = False

    async def load(self, handle: RunHandle) -> None:
        """Load the run's rows (once): from then on any worker may take its lanes, before
        ``run`` works on it here (serve loads a run at once and works on it in its turn)."""
        if self._loaded:
            return
        try:
            await load_run(self.journal, handle.run_id, self.job, weight=self.settings.weight,
                           placed=self.placed)
        except BaseException:
            await to_the_end(self._leave(handle.run_id, interrupted=True))
            raise
        self._loaded = True

    async def run(self, handle: RunHandle) -> RunResult:
        run_id = handle.run_id
        await self.load(handle)
        try:
            if self.detach:
                await self.journal.let_go(run_id)
                run = await self.journal.get_run(run_id)
                return RunResult(run_id, run.state, run.by_state())
            await self._work(run_id)
        except BaseException:
            await to_the_end(self._leave(run_id, interrupted=True))
            raise
        return await self._leave(run_id, interrupted=self.shutdown.draining
                                 or self.shutdown.forced)

    async def _work(self, run_id: str) -> None:
        envs = {self.config.sites[s].environment for s in self.job.sites}
        concurrency = max(1, self.config.runner.concurrency)
        async with engine_tools(self.config, envs, concurrency=concurrency,
                                store=self.budget_store, clock=self.clock,
                                observer=self.observer,
                                serve_run=self.placed is not None) as tools:
            self.pacer = tools.pacer  # type: ignore[assignment]
            self.worker = Worker(self.config, self.journal, tools, self.settings,
                                 observer=self.observer, shutdown=self.shutdown,
                                 clock=self.clock, only=run_id, jobs={run_id: self.job})
            await self.worker.run()
            await tools.settle()
            self.blocked = {n: m.blocked.diagnostic for n, m in tools.minters.items()
                            if m.blocked is not None}

    async def _leave(self, run_id: str, *, interrupted: bool) -> RunResult:
        blocked = self.blocked
        state = await self.journal.execute(lambda c: pglanes.run_state(c, run_id))
        if state == RunState.RUNNING and interrupted:
            if await self.journal.execute(
                    lambda c: pglanes.interrupt_if_idle(c, run_id, self._me(), time.time())):
                state = RunState.INTERRUPTED
            else:
                left, held = await self.journal.execute(lambda c: pglanes.lanes_left(c, run_id))
                log.info("runner.run.left_to_workers", run=run_id, lanes_left=left, held=held)
        if state == RunState.FINISHED and blocked:
            state = RunState.FAILED
        if state in (RunState.RUNNING, None):
            await self.journal.let_go(run_id)
        else:
            await self.journal.finish_run(run_id, RunState(state))
        run = await self.journal.get_run(run_id)
        by_state = run.by_state()
        open_items = by_state[ItemState.PENDING] + by_state[ItemState.STARTED]
        stopped = interrupted and bool(open_items)
        Emitter(self.observer)(RunFinished(run=run_id, state=str(run.state)))
        return RunResult(run_id, run.state, by_state, stopped, dict(blocked),
                         self.shutdown.signal)

    def _me(self) -> str:
        return self.worker.id if self.worker is not None else ""

