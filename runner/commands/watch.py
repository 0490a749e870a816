"""``run --metrics-port N``: /metrics and the status page of this run on 127.0.0.1:N.

``forge-runner worker --metrics-port N`` serves its own the same way (``listen``). On a
PostgreSQL journal the page and /metrics show the journal's workers and lanes too. Off by
default. The listener starts before the run is opened, so a port in use stops the
command (exit 2, one line) before anything is journaled or sent; it serves until the command
ends. Loopback only: the page shows account IDs and Jira's messages, and a run has no operator
token (serve does, for a page reached through a proxy).
"""

from __future__ import annotations

import errno
from contextlib import AsyncExitStack

from runner.budgets.store import BudgetStore
from runner.cluster.runengine import ClusterEngine
from runner.config.configfile import Config
from runner.engine.engine import Engine
from runner.engine.shutdown import Shutdown
from runner.errors import ConfigError
from runner.events import FanOut, Observer
from runner.job.jobfile import Job
from runner.journal import Journal
from runner.journal.postgres import PostgresJournal
from runner.monitor import Monitor, serve_monitor
from runner.monitor.journaltime import timed_journal
from runner.monitor.lanes import LanesReader
from runner.progress.output import RunOutput


async def start_watch(stack: AsyncExitStack, port: int | None, config: Config,
                      output: RunOutput) -> Monitor | None:
    """Serve a monitor on ``port`` for as long as ``stack`` lives; None when not asked for."""
    if port is None:
        return None
    monitor = Monitor(config, process="run")
    url = await listen(stack, monitor, port)
    output.note(f"metrics: {url}/metrics, status page {url}/status", "runner.run.metrics",
                url=url)
    return monitor


async def listen(stack: AsyncExitStack, monitor: Monitor, port: int) -> str:
    """Serve ``monitor`` on 127.0.0.1:``port`` for as long as ``stack`` lives; its base URL.
    A port that can't be listened on is a config error (exit 2, one line)."""
    try:
        return await stack.enter_async_context(serve_monitor(monitor, port))
    except OSError as exc:
        why = "already in use" if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc)
        raise ConfigError("--metrics-port", "a port free to listen on (or 0 for any)",
                          f"127.0.0.1:{port} ({why})") from None


def watched_engine(monitor: Monitor | None, run_id: str, config: Config, job: Job,
                   journal: Journal, observer: Observer, shutdown: Shutdown,
                   budget_store: BudgetStore | None, *,
                   detach: bool = False) -> Engine | ClusterEngine:
    """The run's engine; with a monitor, it reports to it too and its journal writes are timed.
    On a PostgreSQL journal, the run is shared by lanes (``runner.cluster``)."""
    if isinstance(journal, PostgresJournal):
        cluster = ClusterEngine(config, job, journal, shutdown=shutdown,
                                budget_store=budget_store, detach=detach,
                                observer=observer if monitor is None
                                else FanOut(observer, monitor))
        if monitor is not None:
            monitor.pacers = lambda: {run_id: cluster.pacer}
            monitor.lanes = LanesReader(journal, cluster.settings.lease_s)
        return cluster
    if monitor is None:
        return Engine(config, job, journal, observer=observer, shutdown=shutdown,
                      budget_store=budget_store)
    engine = Engine(config, job, timed_journal(journal, monitor.metrics.journal_latency),
                    observer=FanOut(observer, monitor), shutdown=shutdown,
                    budget_store=budget_store)
    monitor.pacers = lambda: {run_id: engine.pacer}
    return engine
