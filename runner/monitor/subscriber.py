"""The one subscriber that turns the run's events into metrics and the status page's state.

A ``Monitor`` is an ``Observer``: serve hands it to every run a trigger starts, ``run`` to its
engine. Each event moves the Prometheus metrics (``Metrics``), the statistics of the run it
belongs to (a ``RunStats`` per run: progress, rate, ETA, failure reasons), the process-wide
statistics the budgets section reads (mint use, pauses), and the last hour's chart.

Which run an event belongs to: its site's. Serve runs at most one run per mint bucket at a time
(``runner.remote.triggers``), so a site has at most one run going on; ``run`` has one run.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from runner.budgets import Clock, SystemClock
from runner.budgets.jira import JiraPacer
from runner.budgets.sharedjira import SharedJiraPacer
from runner.config.configfile import Config
from runner.events import (
    Event,
    ItemDone,
    ItemEvent,
    JiraCall,
    JiraRateLimited,
    MintOk,
    RemoteRunFinished,
    RemoteRunStarted,
    RunFinished,
)
from runner.monitor import budgetstate
from runner.monitor.collect import StateCollector
from runner.monitor.lanes import LanesReader
from runner.monitor.metrics import KEEP_RUNS, Metrics
from runner.progress.stats import MAX_REASONS, OTHER_REASON, RunStats, reason_text, scope_kind

# Rows kept per failure reason: enough to find them, bounded however many fail alike.
ROWS_PER_REASON = 5
# The chart's resolution: an hour in 10-second steps.
CHART_STEP_S = 10.0
CHART_SPAN_S = 3600.0
# Latency samples kept per site for the page's median and 95th percentile.
LATENCY_SAMPLES = 500


@dataclass(frozen=True)
class InstallationView:
    """An installation serve knows, and its newest system token's times (never the token)."""

    installation_id: str
    cloud_id: str
    environment: str
    received_at: float | None
    expires_at: float | None


@dataclass
class RunView:
    """One run this process has seen, and its statistics."""

    run_id: str
    job: str
    sites: list[str]
    stats: RunStats
    state: str = "running"
    bound_s: float | None = None  # the plan's shortest possible duration, when known
    rows: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (state, reason)

    def keep_row(self, ev: ItemEvent) -> None:
        key = (ev.state, reason_text(ev.reason))
        if key not in self.rows and len(self.rows) >= MAX_REASONS:
            key = (ev.state, OTHER_REASON)
        rows = self.rows.setdefault(key, [])
        if len(rows) < ROWS_PER_REASON and ev.row not in rows:
            rows.append(ev.row)


@dataclass
class SiteView:
    """What one site's Jira answered: 429s by scope kind, and recent latencies."""

    requests: int = 0
    rate_limited: dict[str, int] = field(default_factory=dict)
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))


class Chart:
    """Items and mints per ``CHART_STEP_S`` over the last ``CHART_SPAN_S``: constant memory."""

    def __init__(self) -> None:
        self.steps: deque[list[float]] = deque(maxlen=int(CHART_SPAN_S / CHART_STEP_S))

    def add(self, now: float, items: int = 0, mints: int = 0) -> None:
        start = now - now % CHART_STEP_S
        if not self.steps or self.steps[-1][0] < start:
            self.steps.append([start, 0.0, 0.0])
        self.steps[-1][1] += items
        self.steps[-1][2] += mints

    def series(self, now: float) -> list[tuple[float, float, float]]:
        """(step start, items/s, mints/s) for each step of the last hour, oldest first."""
        end = now - now % CHART_STEP_S
        by_start = {s[0]: s for s in self.steps}
        count = int(CHART_SPAN_S / CHART_STEP_S)
        out = []
        for n in range(count - 1, -1, -1):
            start = end - n * CHART_STEP_S
            step = by_start.get(start)
            items, mints = (step[1], step[2]) if step else (0.0, 0.0)
            out.append((start, items / CHART_STEP_S, mints / CHART_STEP_S))
        return out


class Monitor:
    """Observer of every run in this process; what /metrics and /status read."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Clock | None = None,
        pacers: Callable[[], Mapping[str, JiraPacer | SharedJiraPacer | None]] = dict,
        installations: Callable[[], Sequence[InstallationView]] = list,
        process: str = "run",
    ) -> None:
        self.config = config
        self.clock: Clock = clock or SystemClock()
        self.metrics = Metrics()
        self.pacers = pacers
        self.installations = installations
        self.process = process  # "serve", "run" or "worker": the page says which
        # On a PostgreSQL journal: its workers and lanes, read as /metrics or the page asks.
        self.lanes: LanesReader | None = None
        self.started_at = self.clock.now()
        self.budgets = self._stats()  # every event: mint use and pauses, process-wide
        self.runs: dict[str, RunView] = {}
        self.sites: dict[str, SiteView] = {}
        self.chart = Chart()
        self._by_site: dict[str, str] = {}
        self._quota: list[budgetstate.QuotaUse] = []
        self.metrics.registry.register(StateCollector(self))

    def _stats(self) -> RunStats:
        # Rates and pauses by the clock the budgets keep (serve's may run faster in tests).
        return RunStats.from_config(self.config, clock=self.clock.now, wall=self.clock.now)

    async def refresh(self) -> None:
        """Read what is read from the journal rather than told by events (workers, lanes)."""
        if self.lanes is not None:
            await self.lanes.read()

    def quota(self) -> list[budgetstate.QuotaUse]:
        """The points quotas as the runs going on see them; between runs, as the last one left
        them, until that window ends."""
        now = self.clock.now()
        pacers = [p for p in self.pacers().values() if p is not None]
        if pacers:
            self._quota = budgetstate.quota_use(pacers, now)
        return [q for q in self._quota if q.reset_at > now]

    # -- runs ---------------------------------------------------------------------------------
    def run_started(self, run_id: str, job: str, sites: Sequence[str], total: int | None,
                    *, bound_s: float | None = None) -> None:
        """A run starts (or resumes) in this process: its events count for it from now on."""
        stats = self._stats()
        stats.set_total(total)
        self.runs[run_id] = RunView(run_id, job, list(sites), stats, bound_s=bound_s)
        while len(self.runs) > KEEP_RUNS:
            del self.runs[next(iter(self.runs))]
        for site in sites:
            self._by_site[site] = run_id
        self.metrics.run_started(run_id, job, total, self.clock.now())

    def run_ended(self, run_id: str, state: str) -> None:
        view = self.runs.get(run_id)
        if view is not None:
            view.state = state
            view.stats.finish()
            for site in view.sites:
                if self._by_site.get(site) == run_id:
                    del self._by_site[site]
        self.metrics.run_ended(run_id)

    def _run_of(self, ev: Event) -> RunView | None:
        site = getattr(ev, "site", None)
        run_id = self._by_site.get(site) if isinstance(site, str) else None
        if run_id is None and len(self._by_site) == 1 and len(set(self._by_site.values())) == 1:
            run_id = next(iter(self._by_site.values()))
        return self.runs.get(run_id) if run_id is not None else None

    # -- the observer -------------------------------------------------------------------------
    def event(self, ev: Event, /) -> None:
        now = self.clock.now()
        match ev:
            case RemoteRunStarted():
                self.run_started(ev.run, ev.job, [ev.site] if ev.site else [], ev.items,
                                 bound_s=ev.bound_s)
                return
            case RunFinished() | RemoteRunFinished():
                self.run_ended(ev.run, ev.state)
                return
            case _:
                pass
        view = self._run_of(ev)
        self.metrics.event(ev, view.run_id if view else None, now)
        self.budgets.event(ev)
        if view is not None:
            view.stats.event(ev)
        match ev:
            case ItemEvent():
                self.chart.add(now, items=1)
                if view is not None and not isinstance(ev, ItemDone):
                    view.keep_row(ev)
            case MintOk():
                self.chart.add(now, mints=1)
            case JiraCall():
                site = self.sites.setdefault(ev.site, SiteView())
                site.requests += 1
                if ev.duration_s is not None:
                    site.latencies.append(ev.duration_s)
            case JiraRateLimited():
                site = self.sites.setdefault(ev.site, SiteView())
                kind = scope_kind(ev.scope) if ev.scope else "site"
                site.rate_limited[kind] = site.rate_limited.get(kind, 0) + 1
            case _:
                pass
