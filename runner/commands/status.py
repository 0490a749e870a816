"""``forge-runner status [RUN]``: the latest runs, or one run's items by state, site and reason.

    forge-runner status [--config FILE | --journal PATH|URL] [--limit N] [--format text|json]
    forge-runner status RUN [--config FILE | --journal PATH|URL] [--format text|json]

On a PostgreSQL journal it also lists the workers alive (host, pid, heartbeat age, lanes held)
and, for one run, the lanes held by each worker (``runner.commands.workers``).

The journal is the one named by the config (``[runner] journal`` or ``journal_url_env``), or
``--journal`` (an SQLite file or a ``postgresql://`` URL); without either, ``forge-runner.db``
in the current folder. Reading never creates a journal.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from runner.commands import positive_int
from runner.commands.workers import lanes_json, lanes_text, workers_json, workers_text
from runner.config.configfile import RunnerSettings
from runner.errors import ExitCode
from runner.journal import ItemState, RunCounts, RunRecord, RunState
from runner.journal.open import JournalTarget, journal_target, open_journal, parse_target
from runner.journal.postgres import PostgresJournal
from runner.journal.reasons import text_of

# Columns of the runs table, in the order the states usually matter to a reader.
SHOWN_STATES = (
    ItemState.DONE,
    ItemState.FAILED,
    ItemState.SKIPPED,
    ItemState.BLOCKED,
    ItemState.UNCERTAIN,
    ItemState.STARTED,
    ItemState.PENDING,
)


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "status",
        help="the latest runs, or one run's items by state, site and reason",
        description="Without RUN: the latest runs with their counts. With RUN: that run's "
        "items counted by state, per site and by reason (one line per reason code, whatever "
        "the accounts or numbers of its items; `report RUN` gives each item's).",
    )
    parser.add_argument("run", nargs="?", metavar="RUN", help="a run ID (r-YYYYMMDD-xxxxxx)")
    add_journal_arguments(parser)
    parser.add_argument("--limit", type=positive_int, default=10, metavar="N",
                        help="runs listed (10; at least 1)")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.set_defaults(func=status_command)


def add_journal_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--config", type=Path, metavar="FILE",
                       help="read the journal ([runner] journal or journal_url_env) from it")
    where.add_argument("--journal", type=parse_target, metavar="PATH|URL",
                       help="the journal itself: an SQLite file, or a postgresql:// URL")


def journal_path(args: argparse.Namespace) -> JournalTarget:
    """``--journal``, else the config's journal, else the default file name."""
    if args.journal is not None:
        return args.journal  # type: ignore[no-any-return]
    if args.config is not None:
        from runner.config.configfile import (
            load_config,  # the whole config is checked, as for `run`
        )

        return journal_target(load_config(args.config).runner)
    return RunnerSettings().journal


def status_command(args: argparse.Namespace) -> int:
    path = journal_path(args)
    return asyncio.run(_status(path, args.run, args.limit, args.format, sys.stdout))


async def _status(path: JournalTarget, run_id: str | None, limit: int, fmt: str,
                  out: TextIO) -> int:
    async with open_journal(path, create=False, wait_s=0) as journal:
        shared = isinstance(journal, PostgresJournal)
        workers = await workers_json(journal) if isinstance(journal, PostgresJournal) else []
        if run_id is None:
            runs = await journal.runs(limit)
            if fmt == "json":
                doc: dict[str, Any] = {"runs": [run_json(r) for r in runs]}
                if shared:
                    doc["workers"] = workers
                json.dump(doc, out, indent=2)
                out.write("\n")
            else:
                worked = (await _worked(journal, runs)
                          if isinstance(journal, PostgresJournal) else set())
                out.write(runs_table(runs, worked=worked))
                if shared:
                    out.write("\n" + workers_text(workers))
        else:
            counts = await journal.counts(run_id)
            lanes = (await lanes_json(journal, run_id)
                     if isinstance(journal, PostgresJournal) else None)
            if fmt == "json":
                doc = counts_json(counts)
                if lanes is not None:
                    doc["lanes"] = lanes
                json.dump(doc, out, indent=2)
                out.write("\n")
            else:
                out.write(run_text(counts, worked=bool(lanes and lanes["held"])))
                if lanes is not None:
                    out.write("\n" + lanes_text(run_id, lanes))
    return ExitCode.OK



async def _worked(journal: PostgresJournal, runs: Sequence[RunRecord]) -> set[str]:
    """The running runs whose lanes workers hold."""
    out = set()
    for run in runs:
        if run.state is RunState.RUNNING and (await lanes_json(journal, run.run_id))["held"]:
            out.add(run.run_id)
    return out


# -- text ---------------------------------------------------------------------------------------


def when(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))


def iso(ts: float | None) -> str | None:
    return None if ts is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def state_text(run: RunRecord, *, worked: bool = False) -> str:
    """The run's state, noting a "running" run whose process is gone (it was killed), unless
    workers hold lanes (``worked``): they go on with it."""
    if run.state is RunState.RUNNING and not worked and holder_alive(run.holder) is False:
        return "running? (its process is gone: interrupted)"
    return str(run.state)


def holder_alive(holder: str) -> bool | None:
    """Whether the holder ("pid N on HOST") still exists; None when it can't be told."""
    parts = holder.split()
    if len(parts) != 4 or parts[0] != "pid" or parts[2] != "on" or not parts[1].isdigit():
        return None
    if parts[3] != socket.gethostname():
        return None
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def runs_table(runs: Sequence[RunRecord], *, worked: frozenset[str] | set[str] = frozenset()
               ) -> str:
    """``worked``: the runs whose lanes workers hold."""
    if not runs:
        return "No runs in this journal yet.\n"
    header = ["RUN", "JOB", "STATE", "STARTED (UTC)", "ENDED (UTC)", *SHOWN_STATES]
    rows = [
        [
            r.run_id,
            r.job_name,
            state_text(r, worked=r.run_id in worked),
            when(r.started_at),
            when(r.ended_at),
            *(_n(r.by_state()[s], s, r) for s in SHOWN_STATES),
        ]
        for r in runs
    ]
    return _table([[str(h) for h in header], *rows])


def run_text(counts: RunCounts, *, worked: bool = False) -> str:
    run = counts.run
    lines = [
        f"run {run.run_id}: {run.job_name} ({run.job_path})",
        f"  state    {state_text(run, worked=worked)}   last run by {run.holder}",
        f"  started  {when(run.started_at)} UTC   ended {when(run.ended_at)} UTC",
        f"  items    {_n(run.total_items)} planned",
        "",
        "By state:",
    ]
    lines += [
        f"  {state:<10} {_n(counts.by_state[state], state, run):>12}" for state in SHOWN_STATES
    ]
    if counts.by_site:
        lines += ["", "By site (items journaled; pending here means put back in line):"]
        seen = [s for s in SHOWN_STATES if any(by.get(s) for by in counts.by_site.values())]
        site_rows = [["SITE", *seen]]
        for site, by_state in counts.by_site.items():
            site_rows.append([site, *(_n(by_state.get(s, 0)) for s in seen)])
        lines += ["  " + line for line in _table(site_rows).splitlines()]
    if counts.by_reason:
        lines += ["", "By reason:"]
        reason_rows = [["STATE", "COUNT", "REASON", "WHAT IT MEANS"]]
        reason_rows += [[str(r.state), _n(r.count), r.reason, _meaning(r.reason)]
                        for r in counts.by_reason]
        lines += ["  " + line for line in _table(reason_rows).splitlines()]
    return "\n".join(lines) + "\n"


def _meaning(code: str) -> str:
    text = text_of(code)
    return "" if text == code else text


def _n(n: int | None, state: ItemState | None = None, run: RunRecord | None = None) -> str:
    if state is ItemState.PENDING and run is not None and run.total_items is None:
        return "?"  # the engine had not counted the job's items yet
    return "?" if n is None else f"{n:,}"


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return "".join(
        "  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() + "\n"
        for row in rows
    )


# -- json ---------------------------------------------------------------------------------------


def _states(by_state: Mapping[ItemState, int]) -> dict[str, int]:
    return {str(state): n for state, n in by_state.items()}


def run_json(run: RunRecord) -> dict[str, Any]:
    return {
        "run": run.run_id,
        "job": run.job_name,
        "job_path": run.job_path,
        "state": str(run.state),
        # As the text's "running? (its process is gone)": false for a running run whose
        # process no longer exists, null when it can't be told (another host) or not running.
        "process_alive": holder_alive(run.holder) if run.state is RunState.RUNNING else None,
        "holder": run.holder,
        "started_at": iso(run.started_at),
        "ended_at": iso(run.ended_at),
        "total_items": run.total_items,
        "counts": _states(run.by_state()),
    }


def counts_json(counts: RunCounts) -> dict[str, Any]:
    return {
        **run_json(counts.run),
        "counts": _states(counts.by_state),
        "by_site": {site: _states(by) for site, by in counts.by_site.items()},
        "by_reason": [
            {"state": str(r.state), "reason": r.reason, "text": text_of(r.reason),
             "count": r.count}
            for r in counts.by_reason
        ],
    }
