"""Scheduled triggers that start jobs: one run per installation and interval, never two at once.

Forge delivers a scheduled trigger at least once: it redelivers (up to 4 times, 60 s apart)
when the answer is not a 2xx within 5 s, and a delivery may come twice. So a trigger is
*accepted* at most once per (route, site) within the route's dedup window (half its interval by
default): later deliveries in the window are answered 200 and dropped. A trigger that comes
while the run an earlier one started is still going is answered and not started again.

``accept`` decides synchronously (no await between the check and the mark, so two deliveries
handled at once can't both pass); the caller answers Forge, and only then calls ``run``. The
journal backs the memory up: after a restart, a run of the same site that started within the
window is resumed if it was cut short and not started again if it finished.

On a PostgreSQL journal the decision is the database's instead (``accept_shared``, see
``servedb``), so that any number of serve replicas accept each trigger once; the replica whose
insert won turns the accepted row into a run with ``start_accepted``: a run shared by lanes
(``runner.cluster``), placed on the installation's site, so any ``forge-runner worker`` on the
journal takes its lanes beside the replica, and finishes it if the replica goes.

This process works on the runs whose environments share a mint bucket one after another.
Their budgets are shared through the journal's store, so this does not keep them inside the
bucket; it bounds the process to one run's concurrency at a time. On PostgreSQL a run is opened
and loaded as soon as it is accepted, so workers take its lanes while it waits for its turn here.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

import structlog

from runner.budgets import Clock
from runner.budgets.store import BudgetStore
from runner.cluster.placed import Placement
from runner.cluster.runengine import ClusterEngine
from runner.config.configfile import Config, SiteConfig
from runner.engine.engine import Engine, RunResult
from runner.engine.shutdown import Shutdown
from runner.errors import JobChangedError, RunLockedError
from runner.events import (
    Emitter,
    NullObserver,
    Observer,
    RemoteRunAlreadyDone,
    RemoteRunCrashed,
    RemoteRunFinished,
    RemoteRunLocked,
    RemoteRunResumed,
    RemoteRunStarted,
    RemoteRunTemplateChanged,
    TriggerAccepted,
    TriggerDuplicate,
    TriggerOverlap,
)
from runner.job.jobfile import Job
from runner.job.plan import make_plan
from runner.journal import Journal
from runner.journal.base import RunHandle, RunState
from runner.journal.postgres import PostgresJournal
from runner.journal.rules import job_identity
from runner.remote.nightly import JobTemplate, job_config, journal_identity, site_for
from runner.remote.servedb import AcceptedTrigger, ServeDatabase
from runner.remote.settings import INTERVALS, ServeConfig, ServeRoute

# How many recent runs the journal is asked about after a restart.
RECENT_RUNS = 1000


class Decision(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"  # a redelivery or a duplicate within the window
    RUNNING = "running"  # the run an earlier trigger started is still going


@dataclass(frozen=True)
class RunOutcome:
    """How a run started by a trigger ended."""

    route: str
    site: str
    run_id: str | None
    exit_code: int | None
    state: str  # the run's state, or why none ran ("already done", "locked elsewhere")
    resumed: bool = False  # an earlier run of the same interval, cut short, was picked up


@dataclass
class _Active:
    shutdown: Shutdown = field(default_factory=Shutdown)


class TriggerDesk:
    """Accepts job triggers and runs each accepted one to its end."""

    def __init__(
        self,
        config: Config,
        serve: ServeConfig,
        journal: Journal,
        templates: dict[str, JobTemplate],
        *,
        budget_store: BudgetStore | None = None,
        clock: Clock,
        token_url: Callable[[], str],
        secret: str,
        observer: Observer | None = None,
        engine_journal: Journal | None = None,
        servedb: ServeDatabase | None = None,
    ) -> None:
        self._config = config
        self._serve = serve
        self._journal = journal
        # What the engines write to: the journal itself, or one that times its writes.
        self._engine_journal: Journal = engine_journal or journal
        self._budget_store = budget_store
        self._templates = templates
        self._clock = clock
        self._token_url = token_url
        self._secret = secret
        self._observer: Observer = observer or NullObserver()
        self._emit = Emitter(self._observer)
        self._accepted: dict[tuple[str, str], float] = {}
        self._active: dict[tuple[str, str], _Active] = {}
        self._bucket_locks: dict[str, asyncio.Lock] = {}
        self.outcomes: list[RunOutcome] = []
        # The engines of the runs going on, by run ID (the status page reads their budgets).
        self.engines: dict[str, Engine | ClusterEngine] = {}
        self._ended = asyncio.Event()
        self._stopping = False
        # Replicas on PostgreSQL: what decides, and where the runs' tokens are read.
        self._db = servedb

    def accept(self, route: ServeRoute, site: SiteConfig) -> Decision:
        """Whether this delivery starts a run. Synchronous: nothing interleaves with it."""
        key = (route.path, site.name)
        now = self._clock.now()
        last = self._accepted.get(key)
        if last is not None and now - last < route.dedup_window_s:
            self._emit(TriggerDuplicate(route=route.path, site=site.name,
                                        accepted_s_ago=round(now - last, 1)))
            return Decision.DUPLICATE
        if key in self._active:
            self._emit(TriggerOverlap(route=route.path, site=site.name))
            return Decision.RUNNING
        self._accepted[key] = now
        self._active[key] = _Active()
        self._emit(TriggerAccepted(route=route.path, site=site.name))
        return Decision.ACCEPTED

    async def accept_shared(self, route: ServeRoute, site: SiteConfig
                            ) -> tuple[Decision, AcceptedTrigger | None]:
        """``accept`` for replicas: the database decides (``servedb``), for every replica."""
        assert self._db is not None
        got = await self._db.accept(route.path, site.installation_id,
                                    INTERVALS[route.interval], route.dedup_window_s)
        if got.trigger is not None:
            self._emit(TriggerAccepted(route=route.path, site=site.name))
            return Decision.ACCEPTED, got.trigger
        if got.decision == "duplicate":
            self._emit(TriggerDuplicate(route=route.path, site=site.name,
                                        accepted_s_ago=got.accepted_s_ago))
            return Decision.DUPLICATE, None
        self._emit(TriggerOverlap(route=route.path, site=site.name))
        return Decision.RUNNING, None

    async def start_accepted(self, trigger: AcceptedTrigger) -> None:
        """Turn a trigger the database accepted into a run, to its end, and mark it ended.

        Everything comes from the trigger's row and the installation's, not from the request
        that brought it: whichever process calls this (today the replica whose insert won,
        after answering Forge) starts the same run."""
        assert self._db is not None
        route = next(r for r in self._serve.routes if r.path == trigger.route)
        self._db.begin(trigger.trigger_id)
        state = "crashed: installation unknown"
        try:
            inst = await self._db.installation(trigger.installation_id)
            if inst is not None:
                site = site_for(self._config, self._serve, inst)
                self._active.setdefault((route.path, site.name), _Active())
                state = (await self.run(route, site)).state
        except Exception as exc:
            # The database away before the run began: said, and the row marked ended (now or
            # by the heartbeat), so the next interval's trigger is not held back.
            self._emit(RemoteRunCrashed(error=type(exc).__name__))
            state = f"crashed: {type(exc).__name__}"
        finally:
            await self._db.ended(trigger.trigger_id, state)

    def stop(self) -> None:
        """Drain every run (first call) or stop them at once (second call)."""
        self._stopping = True
        for active in list(self._active.values()):
            active.shutdown.request()

    async def run(self, route: ServeRoute, site: SiteConfig) -> RunOutcome:
        """Run the route's job on ``site`` (after ``accept`` said ACCEPTED)."""
        key = (route.path, site.name)
        active = self._active[key]
        try:
            with structlog.contextvars.bound_contextvars(site=site.name, route=route.path):
                outcome = await self._run(route, site, active.shutdown)
        except Exception as exc:
            # One site's failure must not take the server down; it is logged with its reason.
            self._emit(RemoteRunCrashed(error=type(exc).__name__))
            outcome = RunOutcome(route.path, site.name, None, None, f"crashed: {exc}")
        finally:
            self._active.pop(key, None)
        self.outcomes.append(outcome)
        self._ended.set()
        self._ended = asyncio.Event()
        return outcome

    async def wait_for_outcomes(self, count: int) -> list[RunOutcome]:
        """Until ``count`` runs have ended (or found nothing to do); their outcomes."""
        while len(self.outcomes) < count:
            await self._ended.wait()
        return list(self.outcomes)

    async def _run(self, route: ServeRoute, site: SiteConfig, shutdown: Shutdown) -> RunOutcome:
        assert route.job is not None
        template = self._templates[route.path]
        job = template.for_site(site)
        sealed = (self._db.url, self._db.key.encoded()) if self._db is not None else None
        config = job_config(self._config, self._serve, site, self._token_url(), self._secret,
                            sealed)
        bucket = config.environments[site.environment].bucket
        lock = self._bucket_locks.setdefault(bucket, asyncio.Lock())
        if isinstance(self._journal, PostgresJournal):
            # Opened and loaded at once: workers take its lanes while this replica still works
            # on an earlier run; only the replica's own work on it waits for its turn.
            started = await self._start(route, site, job, config, shutdown)
            if isinstance(started, RunOutcome):
                return started
            handle, engine = started
            assert isinstance(engine, ClusterEngine)
            await engine.load(handle)
            async with lock:
                result = await self._work(handle, engine)
        else:
            async with lock:
                started = await self._start(route, site, job, config, shutdown)
                if isinstance(started, RunOutcome):
                    return started
                handle, engine = started
                result = await self._work(handle, engine)
        self._emit(RemoteRunFinished(run=result.run_id, job=job.name, state=str(result.state),
                                     exit_code=result.exit_code))
        return RunOutcome(route.path, site.name, result.run_id, result.exit_code,
                          str(result.state), handle.resumed)

    async def _start(self, route: ServeRoute, site: SiteConfig, job: Job, config: Config,
                     shutdown: Shutdown) -> tuple[RunHandle, Engine | ClusterEngine] | RunOutcome:
        """The run opened in the journal and its engine, or why none is started."""
        if shutdown.draining or self._stopping:
            return RunOutcome(route.path, site.name, None, None, "not started (stopping)")
        # The plan checks every row as check_rows does, and knows the shortest duration too.
        checked = await asyncio.to_thread(functools.partial(make_plan, serve_run=True),
                                          job, config)
        identity = journal_identity(self._templates[route.path].path, site.name)
        fresh = await self._fresh(identity, route)
        if fresh is None:
            self._emit(RemoteRunAlreadyDone(job=job.name))
            return RunOutcome(route.path, site.name, None, None, "already done")
        try:
            handle = await self._open(job.name, identity, job, config, fresh)
        except RunLockedError as exc:
            self._emit(RemoteRunLocked(job=job.name, holder=exc.holder))
            return RunOutcome(route.path, site.name, exc.run_id, 4, "locked elsewhere")
        await self._journal.set_total(handle.run_id, checked.items)
        opened = RemoteRunResumed if handle.resumed else RemoteRunStarted
        self._emit(opened(run=handle.run_id, job=job.name, items=checked.items,
                          site=site.name, bound_s=checked.shortest_s))
        engine: Engine | ClusterEngine
        if isinstance(self._journal, PostgresJournal):
            # Replicas: the run's lanes are open to every worker, which rebuild its job from
            # the placement (and this replica works on it too, as `run` does).
            engine = ClusterEngine(config, job, self._journal, observer=self._observer,
                                   clock=self._clock, shutdown=shutdown,
                                   budget_store=self._budget_store,
                                   placed=Placement(site).dumps())
        else:
            engine = Engine(config, job, self._engine_journal, observer=self._observer,
                            clock=self._clock, shutdown=shutdown,
                            budget_store=self._budget_store, serve_run=True)
        self.engines[handle.run_id] = engine
        return handle, engine

    async def _work(self, handle: RunHandle, engine: Engine | ClusterEngine) -> RunResult:
        try:
            return await engine.run(handle)
        finally:
            self.engines.pop(handle.run_id, None)

    async def _fresh(self, identity: str, route: ServeRoute) -> bool | None:
        """False: resume the site's run cut short within the window; None: it finished within
        the window (a delivery after a restart), start nothing; True: start a new run."""
        now = self._clock.now()
        identity = job_identity(identity)
        for run in await self._journal.runs(RECENT_RUNS):
            if run.job_path != identity:
                continue
            if now - run.started_at >= route.dedup_window_s:
                return True
            return None if run.state is RunState.FINISHED else False
        return True

    async def _open(self, name: str, identity: str, job: Job, config: Config,
                    fresh: bool) -> RunHandle:
        try:
            return await self._journal.open_run(name, identity, job.fingerprint,
                                                config.fingerprint, job.text, fresh=fresh)
        except JobChangedError:
            # The template changed since the cut-short run: that run is history.
            self._emit(RemoteRunTemplateChanged(job=name))
            return await self._journal.open_run(name, identity, job.fingerprint,
                                                config.fingerprint, job.text, fresh=True)
