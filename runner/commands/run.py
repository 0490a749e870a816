"""`forge-runner run JOB`, `resume RUN`, `retry RUN --failed`: check everything, then run.

Order of work: load the config and the job, check every row (nothing is sent before all is
checked: a bad file, or a --report path that can't be written, exits 2), open or resume the run
in the journal (a job already running elsewhere exits 4; a journal that can't be read or
written exits 5), serve the embedded sandbox when the config asks for it (on a free port if its
own is taken), run the engine with a live view or plain progress lines, print the summary,
write the report, exit with the run's code (0 done, 1 items failed, 3 an environment blocked,
130 interrupted by SIGINT, 143 by SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys
import threading
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from rich.console import Console

from runner.aio import single_error
from runner.config.configfile import Config, load_config
from runner.engine.engine import FINAL, Engine, RunResult
from runner.engine.shutdown import Shutdown
from runner.errors import ExitCode, RunLockedError
from runner.job.jobfile import Job, load_job
from runner.job.plan import make_plan
from runner.journal import SqliteJournal
from runner.journal.base import RunHandle
from runner.logs.redact import redact
from runner.logs.setup import LogFormat, configure_logging
from runner.progress import RunStats, Summary, open_progress
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
    p.add_argument("--concurrency", type=int, metavar="N",
                   help="users worked on at once (overrides [runner] concurrency)")
    p.add_argument("--quiet", action="store_true", help="no live view, only the summary")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="log every mint and call at info level under the live view too")


def add_parser(sub: Any) -> None:
    run = sub.add_parser("run", help="run a job (resumes its unfinished run)",
                         description="Run a job: check it, then do every item, journaled. "
                         "Running the same job again resumes its unfinished run.")
    run.add_argument("job", type=Path, help="the job file (TOML)")
    add_common(run)
    run.add_argument("--dry-run", action="store_true",
                     help="check the config, the job and every row; send nothing")
    run.add_argument("--fresh", action="store_true",
                     help="start a new run even if the job has an unfinished one")
    run.set_defaults(func=lambda a: _main(a, mode="run"))

    resume = sub.add_parser("resume", help="resume a run by its ID")
    resume.add_argument("run_id", metavar="RUN")
    resume.add_argument("--job", type=Path, help="the job file (default: the run's own path)")
    add_common(resume)
    resume.set_defaults(func=lambda a: _main(a, mode="resume"))

    retry = sub.add_parser("retry", help="put a run's failed items back in line and resume it")
    retry.add_argument("run_id", metavar="RUN")
    retry.add_argument("--failed", action="store_true", required=True,
                       help="requeue the failed items (and skipped and blocked ones)")
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
    if args.concurrency:
        from dataclasses import replace

        config = replace(config, runner=replace(config.runner, concurrency=args.concurrency))
    console = Console(stderr=False)
    log_format: LogFormat = args.log_format or ("console" if console.is_terminal else "plain")
    # Under the live view, per-user info lines would bury it: warnings and errors only, unless
    # asked. Plain (non-terminal) output keeps every line: it is the record of the run.
    live = console.is_terminal and not args.quiet
    level = "INFO" if args.verbose or not live else "WARNING"
    # No stream: the handler follows rich's redirected stderr, so lines print above the view.
    configure_logging(format=log_format, level=level)
    return asyncio.run(_run(args, config, sandbox, console, mode))


class _StopChecking(Exception):
    """A signal came while every row was being checked."""


def _stop_when(stop: threading.Event) -> Callable[[], None]:
    """A checkpoint for the row check that stops it once ``stop`` is set."""

    def checkpoint() -> None:
        if stop.is_set():
            raise _StopChecking

    return checkpoint


async def _run(args: argparse.Namespace, config: Config, sandbox: SandboxConfig | None,
               console: Console, mode: str) -> int:
    # Signals are ours from the start: a stop while every row is being checked (a minute for a
    # million rows) ends the command at once (130 SIGINT, 143 SIGTERM), nothing sent and nothing
    # journaled.
    shutdown = Shutdown()
    with shutdown.installed():
        return await _checked_run(args, config, sandbox, console, mode, shutdown)


async def _checked_run(args: argparse.Namespace, config: Config, sandbox: SandboxConfig | None,
                       console: Console, mode: str, shutdown: Shutdown) -> int:
    async with AsyncExitStack() as stack:
        journal = await stack.enter_async_context(SqliteJournal(config.runner.journal))
        job_path: Path | None = getattr(args, "job", None)
        if job_path is None:
            job_path = Path((await journal.get_run(args.run_id)).job_path)
        job = load_job(job_path, config)
        stop = threading.Event()
        shutdown.on_drain(stop.set)
        try:
            plan = await asyncio.to_thread(
                functools.partial(make_plan, job, config, checkpoint=_stop_when(stop))
            )
        except _StopChecking:
            print("forge-runner: stopped while checking the job; nothing was sent",
                  file=sys.stderr)
            return ExitCode.stopped_by(shutdown.signal)
        total = plan.items
        if getattr(args, "dry_run", False):
            console.print(f"[bold]{job.name}[/]: {plan.rows} rows, {plan.users} users, "
                          f"{total} items checked; nothing sent (dry run). Shortest possible "
                          f"duration {plan.shortest_s:.1f}s (`forge-runner plan` for details).")
            return ExitCode.OK
        try:
            handle = await _open(journal, job, config, args, mode)
        except RunLockedError as exc:
            # Like every other refusal: one unwrapped line on stderr, where cron mails it from.
            print(f"forge-runner: {exc}", file=sys.stderr)
            return ExitCode.ALREADY_RUNNING
        await journal.set_total(handle.run_id, total)
        if sandbox is not None and sandbox.embedded:
            from runner.sandbox.embedded import serve_embedded

            embedded = await stack.enter_async_context(serve_embedded(sandbox, config))
            config = embedded.config  # pointed at the port served, when its own was taken
            if embedded.moved:
                print(f"forge-runner: {embedded.moved}", file=sys.stderr)
            console.print(f"sandbox: serving {embedded.sandbox.url} for this run")
        verb = "resuming" if handle.resumed else "starting"
        console.print(f"{verb} run [bold]{handle.run_id}[/] of {job.name}: {total} items")
        stats = RunStats.from_config(config)
        prior = (await journal.counts(handle.run_id)).by_state
        # A resumed run shows progress over what is left, not over the whole job.
        stats.set_total(max(0, total - sum(n for s, n in prior.items() if s in FINAL)))
        result = await _engine_run(config, job, journal, handle, stats, console, args.quiet,
                                   shutdown)
        stats.finish()
        # The plan's bound is for the whole job: a resumed run has less left to do.
        bound = None if handle.resumed else plan.shortest_s
        console.print(Summary.render(stats, lower_bound_s=bound))
        for env, diagnostic in result.blocked.items():
            console.print(f"[red]environment {env} is blocked[/]\n{redact(diagnostic)}")
        console.print(_closing(result))
        if args.report:
            info = RunInfo(run_id=result.run_id, job=job.name, config=str(config.path),
                           exit_code=result.exit_code, lower_bound_s=bound)
            try:
                await write_report_async(args.report, stats, info,
                                         journal.records(handle.run_id))
            except OSError as exc:  # checked at the start, so the disk changed meanwhile
                print(f"forge-runner: the report {args.report} could not be written "
                      f"({exc.strerror or exc}); `forge-runner report {result.run_id}` lists "
                      f"the run's items from the journal", file=sys.stderr)
        return result.exit_code
    return ExitCode.OK  # pragma: no cover (the stack never swallows)


async def _open(journal: SqliteJournal, job: Job, config: Config, args: argparse.Namespace,
                mode: str) -> RunHandle:
    if mode == "run":
        return await journal.open_run(job.name, str(job.path), job.fingerprint, config.fingerprint,
                                      job.text, fresh=args.fresh)
    if mode == "retry":
        await journal.requeue(args.run_id, ("failed", "skipped", "blocked"))
    return await journal.resume(args.run_id)


async def _engine_run(config: Config, job: Job, journal: SqliteJournal, handle: RunHandle,
                      stats: RunStats, console: Console, quiet: bool,
                      shutdown: Shutdown) -> RunResult:
    engine = Engine(config, job, journal, observer=stats, shutdown=shutdown)
    if quiet:
        return await engine.run(handle)
    progress = open_progress(stats, console=console, title=f"forge-runner: {job.name}")
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


def _closing(result: RunResult) -> str:
    code = result.exit_code
    if code in (ExitCode.INTERRUPTED, ExitCode.TERMINATED):
        return (f"run {result.run_id} interrupted; run the same command again to resume "
                f"(or: forge-runner resume {result.run_id})")
    if code == ExitCode.BLOCKED:
        return f"run {result.run_id}: an environment is blocked (exit 3)"
    if code == ExitCode.FAILED:
        return (f"run {result.run_id}: some items failed (exit 1); see "
                f"`forge-runner report {result.run_id}`, then `forge-runner retry "
                f"{result.run_id} --failed`")
    return f"run {result.run_id}: all done"
