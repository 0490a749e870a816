"""`forge-runner run JOB`, `resume RUN`, `retry RUN --failed`: check everything, then run.

Order of work: load the config and the job, check every row (nothing is sent before all is
checked: a bad file, or a --report path that can't be written, exits 2), open or resume the run
in the journal (a job already running elsewhere exits 4; a journal that can't be read or
written exits 6; a finished run is taken up again for rows added since, and says "nothing to
do" when there are none; ``--fresh`` first says how many creates it will send again), serve
the embedded sandbox when the config asks for it (on a free port if its own is taken), run the
engine with a live view or plain progress lines, print the summary, write the report, exit with
the run's code (0 done, 1 items failed, 3 an environment or items blocked, 5 nothing done, 130
interrupted by SIGINT, 143 by SIGTERM). What is printed where (terminal, pipe, JSON, quiet) is
``runner.progress.output``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import threading
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.text import Text

from runner.aio import single_error
from runner.budgets.store import BudgetStore, location_of, open_store
from runner.cluster.settings import cluster_settings
from runner.commands import port_number, positive_int
from runner.commands.closing import RETRIED, finished, nothing_to_do, outcome, recovery, touched
from runner.commands.dryrun import token_lines
from runner.commands.fresh import fresh_warning
from runner.commands.watch import start_watch, watched_engine
from runner.config.configfile import Config, load_config
from runner.engine.engine import FINAL, RunResult
from runner.engine.shutdown import Shutdown
from runner.errors import ConfigError, ExitCode, RunLockedError
from runner.job.jobfile import Job, load_job
from runner.job.plan import make_plan
from runner.job.selection import Selection, from_identity, missing_keys
from runner.journal import Journal
from runner.journal.base import RunHandle
from runner.journal.open import describe, journal_target, open_journal
from runner.monitor import Monitor
from runner.progress import RunStats
from runner.progress.output import RunOutput, add_color_option
from runner.progress.report import RunInfo, check_report_path, write_report_async
from runner.remote.settings import serve_config
from runner.sandbox.config import SandboxConfig, sandbox_config

DEFAULT_CONFIG = "forge-runner.toml"


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=DEFAULT_CONFIG, metavar="FILE",
                   help=f"the config file (default: {DEFAULT_CONFIG})")
    p.add_argument("--log-format", choices=("console", "plain", "json"), default=None,
                   help="log lines as text or structlog JSON (default: console on a terminal, "
                   "plain elsewhere)")
    p.add_argument("--report", metavar="FILE", type=Path,
                   help="write a JSON report of the run here (checked writable before "
                   "anything is sent)")
    p.add_argument("--concurrency", type=positive_int, metavar="N",
                   help="users worked on at once (overrides [runner] concurrency)")
    p.add_argument("--quiet", action="store_true",
                   help="print the summary and warnings only (no live view, no info lines)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="log every mint and call at info level under the live view too")
    p.add_argument("--allow-empty", action="store_true",
                   help="a run that does nothing (no rows, or every item skipped) exits 0, "
                   "not 5 (as the job key allow_empty = true)")
    p.add_argument("--metrics-port", type=port_number, metavar="N",
                   help="serve /metrics and the status page on 127.0.0.1:N while the run "
                   "goes on (0 picks a free port; off by default)")
    add_color_option(p, default=argparse.SUPPRESS)


def add_parser(sub: Any) -> None:
    run = sub.add_parser("run", help="run a job (resumes its unfinished run; repeats nothing)",
                         description="Run a job: check it, then do every item, journaled. "
                         "Running the same job again resumes its unfinished run; once it "
                         "finished, it does only rows added to the source since (none: "
                         "'nothing to do', exit 0). Every process on the same journal (other "
                         "runs, serve's nightly runs) shares one set of budgets, kept in the "
                         "journal's database ([runner] budgets to name another).")
    run.add_argument("job", type=Path, help="the job file (TOML)")
    add_common(run)
    run.add_argument("--dry-run", action="store_true",
                     help="check the config, the job and every row, and read each "
                     "environment's system-token source once (no mint); send nothing")
    run.add_argument("--fresh", action="store_true",
                     help="start over: a new run that does every row again, creates too "
                     "(it first says how many creates the job's last run did)")
    run.add_argument("--limit", type=positive_int, metavar="N",
                     help="a trial: the source's first N rows only, as a run of their own (a "
                     "full run of the job still does every row)")
    run.add_argument("--only", action="append", metavar="KEY[,KEY...]",
                     help="a trial: only the rows with these keys (the job's row_key values), "
                     "as a run of their own; repeatable")
    run.add_argument("--detach", action="store_true",
                     help="on a PostgreSQL journal: start (or resume) the run, load its rows, "
                     "and leave it to `forge-runner worker` processes")
    run.set_defaults(func=lambda a: _main(a, mode="run"))

    resume = sub.add_parser("resume", help="resume a run by its ID (resolves uncertain items)",
                            description="Resume a run where it stopped: items not finished are "
                            "done; uncertain ones (sent, answer lost) are looked up in Jira first "
                            "and sent again only when Jira has no trace of them.")
    resume.add_argument("run_id", metavar="RUN", help="a run ID (r-YYYYMMDD-xxxxxx; "
                        "`forge-runner status` lists them)")
    resume.add_argument("--job", type=Path, help="the job file (default: the run's own path)")
    add_common(resume)
    resume.set_defaults(func=lambda a: _main(a, mode="resume"))

    retry = sub.add_parser("retry", help="put a run's failed, skipped and blocked items back "
                           "in line and resume it",
                           description="Put a run's failed, skipped and blocked items back in "
                           "line, then resume the run (uncertain items are resolved as by "
                           "`resume`).")
    retry.add_argument("run_id", metavar="RUN", help="a run ID (r-YYYYMMDD-xxxxxx; "
                       "`forge-runner status` lists them)")
    # Requeuing those items is retry's only mode; the flag stays for the scripts that pass it.
    retry.add_argument("--failed", action="store_true",
                       help="the default and only mode: requeue failed, skipped and blocked "
                       "items")
    retry.add_argument("--job", type=Path, help="the job file (default: the run's own path)")
    add_common(retry)
    retry.set_defaults(func=lambda a: _main(a, mode="retry"))


def _main(args: argparse.Namespace, *, mode: str) -> int:
    config = load_config(args.config)
    if args.report is not None:
        check_report_path(args.report)  # not after the run: its report would be lost
    # Their packages read [sandbox] and [serve]: a bad one stops here too, before any run opens.
    sandbox = sandbox_config(config)
    serve_config(config)
    if isinstance(journal_target(config.runner), str):
        cluster_settings(config)  # a run on PostgreSQL is shared by lanes: [cluster] checked
    elif getattr(args, "detach", False):
        raise ConfigError("runner.journal", "a postgresql:// URL for --detach (workers share "
                          "runs through PostgreSQL)", str(config.runner.journal),
                          file=config.path)
    if args.concurrency:
        config = replace(config, runner=replace(config.runner, concurrency=args.concurrency))
    output = RunOutput(log_format=args.log_format, quiet=args.quiet, verbose=args.verbose,
                       color=getattr(args, "color", "auto"))
    return asyncio.run(_run(args, config, sandbox, output, mode))


class _StopChecking(Exception):
    """A signal came while every row was being checked."""


def _stop_when(stop: threading.Event) -> Callable[[], None]:
    """A checkpoint for the row check that stops it once ``stop`` is set."""

    def checkpoint() -> None:
        if stop.is_set():
            raise _StopChecking

    return checkpoint


async def _run(args: argparse.Namespace, config: Config, sandbox: SandboxConfig | None,
               output: RunOutput, mode: str) -> int:
    # Signals are ours from the start: a stop while every row is being checked (a minute for a
    # million rows) ends the command at once (130 SIGINT, 143 SIGTERM), nothing sent and nothing
    # journaled.
    shutdown = Shutdown()
    with shutdown.installed():
        return await _checked_run(args, config, sandbox, output, mode, shutdown)


async def _checked_run(args: argparse.Namespace, config: Config, sandbox: SandboxConfig | None,
                       output: RunOutput, mode: str, shutdown: Shutdown) -> int:
    async with AsyncExitStack() as stack:
        target = journal_target(config.runner)
        # A database that goes away mid-run is waited for as long as a Jira call would be.
        journal: Journal = await stack.enter_async_context(
            open_journal(target, wait_s=config.retry_jira.deadline_s))
        job_path: Path
        if mode == "run":
            job_path, selection = args.job, Selection.of(args.limit, args.only)
        else:  # a trial's runs resume as the trial they are
            stored, selection = from_identity((await journal.get_run(args.run_id)).job_path)
            job_path = args.job or stored
        job = selection.apply(load_job(job_path, config))
        stop = threading.Event()
        shutdown.on_drain(stop.set)
        try:
            plan = await asyncio.to_thread(
                functools.partial(make_plan, job, config, checkpoint=_stop_when(stop))
            )
        except _StopChecking:
            code = ExitCode.stopped_by(shutdown.signal)
            output.refuse("stopped while checking the job; nothing was sent", code)
            return code
        missing_keys(job, selection, plan.rows)
        total = plan.items
        if getattr(args, "dry_run", False):
            # The dry run's result is its one line: printed even when quiet.
            output.console.print(
                Text.assemble((job.name, "bold"), f": {plan.rows} rows, {plan.users} users, "
                              f"{total} items checked; nothing sent (dry run). Shortest possible "
                              f"duration {plan.shortest_s:.1f}s (`forge-runner plan` for "
                              "details)."))
            for line in await token_lines(config, job):
                output.console.print(Text(line))
            return ExitCode.OK
        monitor = await start_watch(stack, args.metrics_port, config, output)
        try:
            handle = await _open(journal, job, selection.identity(job_path), config, args, mode,
                                 output)
        except RunLockedError as exc:
            # Like every other refusal: one unwrapped line on stderr, where cron mails it from.
            output.refuse(str(exc), ExitCode.ALREADY_RUNNING)
            return ExitCode.ALREADY_RUNNING
        await journal.set_total(handle.run_id, total)
        # Opened only for a run that sends: a dry run takes nothing from the budgets.
        budget_store = await stack.enter_async_context(open_store(
            location_of(config.runner), wait_s=config.retry_jira.deadline_s))
        if sandbox is not None and sandbox.embedded:
            from runner.sandbox.embedded import serve_embedded

            embedded = await stack.enter_async_context(serve_embedded(sandbox, config))
            config = embedded.config  # pointed at the port served, when its own was taken
            if embedded.moved:
                output.caution(f"forge-runner: {embedded.moved}", "runner.sandbox.moved")
            output.note(f"sandbox: serving {embedded.sandbox.url} for this run",
                        "runner.sandbox.serving", url=embedded.sandbox.url)
        if handle.extends is not None:
            output.note(Text.assemble("run ", (handle.run_id, "bold"),
                                      f" of {job.name} {finished(handle.extends)}; looking for "
                                      f"rows added since: {total} items"),
                        "runner.run.extending", run=handle.run_id, job=job.name, items=total)
        else:
            verb = "resuming" if handle.resumed else "starting"
            output.note(Text.assemble(f"{verb} run ", (handle.run_id, "bold"),
                                      f" of {job.name}: {total} items"),
                        f"runner.run.{verb}", run=handle.run_id, job=job.name, items=total)
        if selection.trial:
            output.note(f"trial ({selection.describe()}): a run of its own; the job's full run "
                        "does every row, these too", "runner.run.trial",
                        selection=selection.describe())
        output.note(f"journal: {describe(target)}", "runner.run.journal",
                    path=describe(target))
        stats = RunStats.from_config(config)
        prior = (await journal.counts(handle.run_id)).by_state
        # A resumed run shows progress over what is left, not over the whole job.
        stats.set_total(max(0, total - sum(n for s, n in prior.items() if s in FINAL)))
        result = await _engine_run(config, job, journal, handle, stats, output, shutdown,
                                   monitor, plan.shortest_s, budget_store,
                                   detach=bool(getattr(args, "detach", False)))
        stats.finish()
        if getattr(args, "detach", False):
            # Its one line, printed even when quiet: what was handed to the workers.
            output.console.print(Text.assemble(
                "run ", (result.run_id, "bold"), f" of {job.name}: {total} items loaded in "
                "the journal and left to the workers (`forge-runner worker`); "
                "`forge-runner status` follows it"))
            return ExitCode.OK
        allowed = job.allow_empty or args.allow_empty
        exit_code, closing = outcome(result, await journal.counts(handle.run_id), allowed,
                                fresh=bool(getattr(args, "fresh", False)))
        # The plan's bound is for the whole job: this run is compared with its share of it,
        # the items it finished, so an interrupted or resumed run is not held to the whole.
        bound = plan.shortest_s * stats.finished / total if total and stats.finished else None
        idle = handle.extends is not None and touched(prior) == touched(result.counts)
        if idle and not result.interrupted:
            # A finished job run again (a retry from cron, "did it work?"): nothing was sent.
            assert handle.extends is not None
            exit_code, closing = ExitCode.OK, nothing_to_do(handle.extends, job.name)
        recovered = recovery(prior, stats)
        if recovered:
            closing = f"{recovered}\n{closing}"
        output.summary(stats, run_id=result.run_id, job=job.name, exit_code=exit_code,
                       closing=closing, blocked=result.blocked, lower_bound_s=bound)
        if args.report:
            info = RunInfo(run_id=result.run_id, job=job.name, config=str(config.path),
                           exit_code=exit_code, lower_bound_s=bound)
            try:
                await write_report_async(args.report, stats, info,
                                         journal.records(handle.run_id))
            except OSError as exc:  # checked at the start, so the disk changed meanwhile
                output.caution(f"forge-runner: the report {args.report} could not be written "
                               f"({exc.strerror or exc}); `forge-runner report {result.run_id}` "
                               "lists the run's items from the journal", "runner.report.failed")
        return exit_code
    return ExitCode.OK  # pragma: no cover (the stack never swallows)


async def _open(journal: Journal, job: Job, identity: str, config: Config,
                args: argparse.Namespace, mode: str, output: RunOutput) -> RunHandle:
    if mode == "run":
        if args.fresh:
            # On stderr, with the other cautions, before anything is opened or sent.
            output.caution(await fresh_warning(journal, job, identity), "runner.run.fresh",
                           job=job.name)
        return await journal.open_run(job.name, identity, job.fingerprint, config.fingerprint,
                                      job.text, fresh=args.fresh)
    if mode == "retry":
        await journal.requeue(args.run_id, RETRIED)
    return await journal.resume(args.run_id)


async def _engine_run(config: Config, job: Job, journal: Journal, handle: RunHandle,
                      stats: RunStats, output: RunOutput, shutdown: Shutdown,
                      monitor: Monitor | None, bound_s: float,
                      budget_store: BudgetStore, detach: bool = False) -> RunResult:
    engine = watched_engine(monitor, handle.run_id, config, job, journal, stats, shutdown,
                            budget_store, detach=detach)
    if monitor is not None:
        monitor.run_started(handle.run_id, job.name, job.sites, stats.total, bound_s=bound_s)
    progress = output.progress(stats, title=f"forge-runner: {job.name}")
    if progress is None:
        return await engine.run(handle)
    result: RunResult | None = None
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(progress.run())
            try:
                result = await engine.run(handle)
            finally:
                progress.stop()
    except BaseExceptionGroup as group:
        # The engine's own error (or the view's), as itself: one line and its exit code.
        raise single_error(group) from None
    assert result is not None
    return result


