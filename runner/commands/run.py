"""`forge-runner run JOB`, `resume RUN`, `retry RUN --failed`: check everything, then run.

Order of work: load the config and the job, check every row (nothing is sent before all is
checked: a bad file, or a --report path that can't be written, exits 2), open or resume the run
in the journal (a job already running elsewhere exits 4; a journal that can't be read or
written exits 6; a finished run is taken up again for rows added since, and says "nothing to
do" when there are none; ``--fresh`` first says how many creates it will send again), serve
the embedded sandbox when the config asks for it (on a free port if its own is taken), run the
engine with a live view or plain progress lines, print the summary, write the report, exit with
the run's code (0 done, 1 items failed, 3 an environment blocked, 5 nothing done, 130
interrupted by SIGINT, 143 by SIGTERM). What is printed where (terminal, pipe, JSON, quiet) is
``runner.progress.output``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.text import Text

from runner.aio import single_error
from runner.budgets.store import BudgetStore, location_of, open_store
from runner.commands import positive_int
from runner.config.configfile import Config, load_config
from runner.engine.engine import FINAL, Engine, RunResult
from runner.engine.shutdown import Shutdown
from runner.errors import ExitCode, RunLockedError
from runner.job.jobfile import Job, load_job
from runner.job.plan import make_plan
from runner.journal import ItemState, SqliteJournal
from runner.journal.base import REQUEUEABLE_STATES, RunCounts, RunHandle, RunRecord
from runner.progress import RunStats
from runner.progress.output import RunOutput, add_color_option
from runner.progress.report import RunInfo, check_report_path, write_report_async
from runner.remote.settings import serve_config
from runner.sandbox.config import SandboxConfig, sandbox_config

DEFAULT_CONFIG = "forge-runner.toml"
# The states `retry` puts back in line; uncertain items are resume's to resolve.
RETRIED = (ItemState.FAILED, ItemState.SKIPPED, ItemState.BLOCKED)


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
                     help="check the config, the job and every row; send nothing")
    run.add_argument("--fresh", action="store_true",
                     help="start over: a new run that does every row again, creates too "
                     "(it first says how many creates the job's last run did)")
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
            code = ExitCode.stopped_by(shutdown.signal)
            output.refuse("stopped while checking the job; nothing was sent", code)
            return code
        total = plan.items
        if getattr(args, "dry_run", False):
            # The dry run's result is its one line: printed even when quiet.
            output.console.print(
                Text.assemble((job.name, "bold"), f": {plan.rows} rows, {plan.users} users, "
                              f"{total} items checked; nothing sent (dry run). Shortest possible "
                              f"duration {plan.shortest_s:.1f}s (`forge-runner plan` for "
                              "details)."))
            return ExitCode.OK
        try:
            handle = await _open(journal, job, config, args, mode, output)
        except RunLockedError as exc:
            # Like every other refusal: one unwrapped line on stderr, where cron mails it from.
            output.refuse(str(exc), ExitCode.ALREADY_RUNNING)
            return ExitCode.ALREADY_RUNNING
        await journal.set_total(handle.run_id, total)
        # Opened only for a run that sends: a dry run takes nothing from the budgets.
        budget_store = await stack.enter_async_context(open_store(location_of(config.runner)))
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
                                      f" of {job.name} {_finished(handle.extends)}; looking for "
                                      f"rows added since: {total} items"),
                        "runner.run.extending", run=handle.run_id, job=job.name, items=total)
        else:
            verb = "resuming" if handle.resumed else "starting"
            output.note(Text.assemble(f"{verb} run ", (handle.run_id, "bold"),
                                      f" of {job.name}: {total} items"),
                        f"runner.run.{verb}", run=handle.run_id, job=job.name, items=total)
        output.note(f"journal: {config.runner.journal}", "runner.run.journal",
                    path=str(config.runner.journal))
        stats = RunStats.from_config(config)
        prior = (await journal.counts(handle.run_id)).by_state
        # A resumed run shows progress over what is left, not over the whole job.
        stats.set_total(max(0, total - sum(n for s, n in prior.items() if s in FINAL)))
        result = await _engine_run(config, job, journal, handle, stats, output, shutdown,
                                   budget_store)
        stats.finish()
        allowed = job.allow_empty or args.allow_empty
        exit_code, closing = _outcome(result, await journal.counts(handle.run_id), allowed,
                                      fresh=bool(getattr(args, "fresh", False)))
        # The plan's bound is for the whole job: this run is compared with its share of it,
        # the items it finished, so an interrupted or resumed run is not held to the whole.
        bound = plan.shortest_s * stats.finished / total if total and stats.finished else None
        idle = handle.extends is not None and _touched(prior) == _touched(result.counts)
        if idle and not result.interrupted:
            # A finished job run again (a retry from cron, "did it work?"): nothing was sent.
            assert handle.extends is not None
            exit_code, closing = ExitCode.OK, _nothing_to_do(handle.extends, job.name)
        recovered = _recovery(prior, result)
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


async def _open(journal: SqliteJournal, job: Job, config: Config, args: argparse.Namespace,
                mode: str, output: RunOutput) -> RunHandle:
    if mode == "run":
        if args.fresh:
            # On stderr, with the other cautions, before anything is opened or sent.
            output.caution(await _fresh_warning(journal, job), "runner.run.fresh", job=job.name)
        return await journal.open_run(job.name, str(job.path), job.fingerprint, config.fingerprint,
                                      job.text, fresh=args.fresh)
    if mode == "retry":
        await journal.requeue(args.run_id, RETRIED)
    return await journal.resume(args.run_id)


async def _engine_run(config: Config, job: Job, journal: SqliteJournal, handle: RunHandle,
                      stats: RunStats, output: RunOutput, shutdown: Shutdown,
                      budget_store: BudgetStore) -> RunResult:
    engine = Engine(config, job, journal, observer=stats, shutdown=shutdown,
                    budget_store=budget_store)
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


async def _fresh_warning(journal: SqliteJournal, job: Job) -> str:
    """What ``--fresh`` will do again: the creates done by the run a plain rerun would pick
    up (creates are the job's non-idempotent actions: sent again, they make a second one)."""
    latest = await journal.latest_run(str(job.path))
    if latest is None:
        return f"--fresh: {job.name} has no earlier run; starting its first"
    done = await journal.done_by_action(latest.run_id)
    creates = [(a.name, done.get(a.index, 0)) for a in job.actions if not a.idempotent]
    total = sum(n for _, n in creates)
    which = ", ".join(f"{name} {n}" for name, n in creates if n)
    return (f"--fresh: starting over; run {latest.run_id} ({latest.state}) did {total} "
            f"create(s){f' ({which})' if which else ''}: this run sends them again")


def _touched(counts: Mapping[ItemState, int]) -> dict[ItemState, int]:
    """The counts of items the journal holds (pending ones are the job's size, not work)."""
    return {s: n for s, n in counts.items() if s is not ItemState.PENDING and n}


def _finished(run: RunRecord) -> str:
    when = (time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(run.ended_at))
            if run.ended_at is not None else "at an unknown time")
    counts = ", ".join(f"{n} {state}" for state, n in _touched(run.counts).items()) or "no items"
    return f"finished {when} ({counts})"


def _nothing_to_do(run: RunRecord, job: str) -> str:
    line = (f"nothing to do: every row of {job} was done by run {run.run_id}, "
            f"{_finished(run)}; nothing was sent. `--fresh` starts over.")
    failed = sum(run.counts.get(s, 0) for s in REQUEUEABLE_STATES)
    if failed:
        line += (f" Its {failed} failed, skipped or blocked item(s): "
                 f"`forge-runner retry {run.run_id} --failed`.")
    return line


def _outcome(result: RunResult, counts: RunCounts, allowed: bool, *, fresh: bool = False
             ) -> tuple[int, str]:
    """The exit code and the closing line. A run whose items all ended without one done (or
    with no items at all) did nothing: exit 5 unless the job or the command allows it."""
    code = result.exit_code
    run_id = result.run_id
    if code in (ExitCode.INTERRUPTED, ExitCode.TERMINATED) and fresh:
        # Running the same --fresh command again would start yet another run.
        return code, (f"run {run_id} interrupted; resume it with `forge-runner resume {run_id}` "
                      "(or the same command without --fresh)")
    if code in (ExitCode.INTERRUPTED, ExitCode.TERMINATED):
        return code, (f"run {run_id} interrupted; run the same command again to resume "
                      f"(or: forge-runner resume {run_id})")
    if code == ExitCode.BLOCKED:
        return code, f"run {run_id}: an environment is blocked (exit 3)"
    if code == ExitCode.FAILED:
        by_state = counts.by_state
        uncertain = by_state.get(ItemState.UNCERTAIN, 0)
        requeued = sum(by_state.get(s, 0) for s in RETRIED)
        steps = []
        if requeued:
            steps.append(f"`forge-runner retry {run_id}` puts the {requeued} failed, skipped "
                         "and blocked back in line")
        if uncertain:
            # retry does not touch them: resume looks each one up in Jira before sending again.
            steps.append(f"`forge-runner resume {run_id}` resolves the {uncertain} uncertain")
        return code, (f"run {run_id}: {_tally(counts)}: some items failed (exit 1); see "
                      f"`forge-runner report {run_id}`" + "".join(f", then {s}" for s in steps[:1])
                      + "".join(f"; {s}" for s in steps[1:]))
    by_state = counts.by_state
    total = sum(by_state.values())
    done = by_state.get(ItemState.DONE, 0)
    if total == 0:
        what = f"run {run_id}: 0 items: the source has no rows, nothing to do"
        if allowed:
            return ExitCode.OK, f"{what} (allowed)"
        return ExitCode.NOTHING_DONE, (f"{what} (exit 5); check the source's export, or set "
                                       "allow_empty = true in the job if that is expected")
    if done == 0:
        what = f"run {run_id}: {_tally(counts)}"
        reason = _top_reason(counts)
        if reason:
            what += f": {reason}"
        if allowed:
            return ExitCode.OK, f"{what} (allowed)"
        return ExitCode.NOTHING_DONE, (f"{what}; nothing was done (exit 5); see `forge-runner "
                                       f"report {run_id}`, then `forge-runner retry {run_id} "
                                       "--failed` once fixed")
    if done == total:
        return code, f"run {run_id}: all done ({done:,} items)"
    return code, f"run {run_id}: {_tally(counts)}; see `forge-runner report {run_id}`"


_NOT_ENDED = (ItemState.PENDING, ItemState.STARTED)


def _tally(counts: RunCounts) -> str:
    """``0 done, 6 skipped``: done always, the other final states when there are any."""
    by_state = counts.by_state
    parts = [f"{by_state.get(ItemState.DONE, 0):,} done"]
    parts += [f"{n:,} {state.value}" for state, n in by_state.items()
              if state not in _NOT_ENDED and state != ItemState.DONE and n]
    return ", ".join(parts)


def _top_reason(counts: RunCounts) -> str | None:
    reasons = sorted(counts.by_reason, key=lambda r: -r.count)
    return reasons[0].reason if reasons else None


def _recovery(prior: Mapping[ItemState, int], result: RunResult) -> str | None:
    """What a resumed run made of the items it found uncertain or started (sent, no answer)."""
    before = prior.get(ItemState.UNCERTAIN, 0) + prior.get(ItemState.STARTED, 0)
    if not before:
        return None
    still = result.counts.get(ItemState.UNCERTAIN, 0)
    resolved = max(0, before - still)
    return (f"recovery: {before} uncertain at the start; {resolved} resolved (found in Jira, "
            f"or surely missing and sent again), {still} still uncertain")
