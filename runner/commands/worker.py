"""``forge-runner worker``: work on the open runs of the journal's PostgreSQL, until stopped.

    forge-runner worker --config FILE [--log-format F] [--metrics-port N]

A worker claims lanes (one user of one run each) of every run started on the journal by
``forge-runner run`` (or ``run --detach``), in fair order over runs and sites, and works them
within the budgets every process on the journal shares (``runner.cluster``). The first
SIGINT/SIGTERM drains: items in flight finish, waiting ones are dropped, and the worker's lanes
go back in line for the other workers at once; a second one stops at once (its lanes are taken
over when their leases end). Exit 0 after a drain; 130/143 after a forced stop; 2 for a config
whose journal is not PostgreSQL (or a --metrics-port that can't be listened on); 6 for a
journal that can't be reached. ``--metrics-port N`` serves /metrics and the status page on
127.0.0.1:N, as ``run`` does (``runner.commands.watch``), with the journal's workers and lanes.
"""

from __future__ import annotations

import argparse
import asyncio
from contextlib import AsyncExitStack
from typing import Any

from rich.console import Console

from runner.budgets import SystemClock
from runner.budgets.store import location_of, open_store
from runner.cluster.settings import ClusterSettings, cluster_settings
from runner.cluster.worker import Worker
from runner.commands import port_number
from runner.commands.run import DEFAULT_CONFIG
from runner.commands.watch import listen
from runner.config.configfile import Config, load_config
from runner.engine.shutdown import Shutdown
from runner.engine.tools import engine_tools
from runner.errors import ConfigError, ExitCode
from runner.events import Emitter, NullObserver, Observer
from runner.journal.open import journal_target, open_journal
from runner.journal.postgres import PostgresJournal
from runner.logs.setup import LogFormat, configure_logging
from runner.monitor import Monitor
from runner.monitor.lanes import LanesReader


def add_parser(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "worker",
        help="work on the open runs of a PostgreSQL journal, beside other workers, until "
        "stopped",
        description="Join the open runs of the journal's PostgreSQL: claim lanes (one user of "
        "one run each) in fair order, work them within the budgets every process shares, "
        "renew their leases, and give them back when stopped (SIGINT/SIGTERM drains; a "
        "second one stops at once). Runs are started by `forge-runner run` (--detach to "
        "leave them to the workers). Needs [runner] journal = \"postgresql://...\"; "
        "[cluster] sets the lease.",
    )
    parser.add_argument("--config", default=DEFAULT_CONFIG, metavar="FILE",
                        help=f"the config file (default: {DEFAULT_CONFIG})")
    parser.add_argument("--log-format", choices=("console", "plain", "json"), default=None)
    parser.add_argument("--metrics-port", type=port_number, metavar="N",
                        help="serve /metrics and the status page (with every worker of the "
                        "journal and the lanes each holds) on 127.0.0.1:N while the worker "
                        "runs (0 picks a free port; off by default)")
    parser.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    target = journal_target(config.runner)
    if not isinstance(target, str):
        raise ConfigError("runner.journal", "a postgresql:// URL (workers share runs through "
                          "PostgreSQL; an SQLite journal belongs to one process)",
                          str(target), file=config.path)
    settings = cluster_settings(config)
    console = Console(stderr=True, markup=False, emoji=False, highlight=False)
    log_format: LogFormat = args.log_format or ("console" if console.is_terminal else "plain")
    configure_logging(format=log_format)
    return asyncio.run(_work(config, target, settings, console, args.metrics_port))


async def _work(config: Config, target: str, settings: ClusterSettings, console: Console,
                metrics_port: int | None) -> int:
    shutdown = Shutdown()
    with shutdown.installed():
        async with AsyncExitStack() as stack:
            # Listening first: a port in use stops the worker before it joins anything.
            monitor: Monitor | None = None
            if metrics_port is not None:
                monitor = Monitor(config, process="worker")
                url = await listen(stack, monitor, metrics_port)
                console.print(f"metrics: {url}/metrics, status page {url}/status")
            observer: Observer = monitor if monitor is not None else NullObserver()
            journal = await stack.enter_async_context(
                open_journal(target, wait_s=config.retry_jira.deadline_s, emit=Emitter()))
            assert isinstance(journal, PostgresJournal)
            store = await stack.enter_async_context(open_store(
                location_of(config.runner), wait_s=config.retry_jira.deadline_s))
            tools = await stack.enter_async_context(engine_tools(
                config, config.environments, concurrency=max(1, config.runner.concurrency),
                store=store, clock=SystemClock(), observer=observer))
            # Every event is logged as it is emitted; a worker has no live view to feed, only
            # its monitor when it serves one.
            worker = Worker(config, journal, tools, settings, observer=observer,
                            shutdown=shutdown)
            if monitor is not None:
                monitor.pacers = lambda: {"": tools.pacer}
                monitor.lanes = LanesReader(journal, settings.lease_s)
            console.print(f"forge-runner worker {worker.id}: working on the open runs of "
                          f"{journal.where} (lease {settings.lease_s:g}s)")
            await worker.run()
            await tools.settle()
            console.print(f"forge-runner worker {worker.id}: stopped; {worker.lanes_done} "
                          "lanes done")
    if shutdown.forced:
        return ExitCode.stopped_by(shutdown.signal)
    return ExitCode.OK

