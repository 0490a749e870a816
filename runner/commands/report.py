"""``forge-runner report RUN``: every failed, skipped, blocked or uncertain item of a run.

    forge-runner report RUN --format json|csv [--output FILE] [--config FILE | --journal PATH]

Each item with its row key, action, account, site, state, and why: the reason's stable code
and short text, the item's message (Jira's or the gateway's words), its target (the method and
path it was for, naming the issue), the HTTP status and the seconds waited when there are.
Items are streamed from the journal a page at a time, so a report of a million failures needs
no more memory than one of ten. Nothing in it can hold a token: the journal stores reasons and
results redacted.
In CSV, a text value that a spreadsheet would read as a formula (it starts with = + - @, a tab
or a carriage return: a row key ``=HYPERLINK(...)``) is written with a ``'`` in front.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from runner.commands.spreadsheet import inert as _inert
from runner.commands.status import (
    add_journal_arguments,
    iso,
    journal_path,
    run_json,
)
from runner.errors import ExitCode, InputError
from runner.journal import PROBLEM_STATES, ItemRecord, ItemState, Journal, RunRecord
from runner.journal.open import JournalTarget, open_journal
from runner.journal.reasons import REPORT_FIELDS, report_fields

FIELDS = (
    "row",
    "action_index",
    "action",
    "account_id",
    "site",
    "state",
    *REPORT_FIELDS,
    "attempts",
    "updated_at",
)


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "report",
        help="every failed, skipped, blocked or uncertain item of a run, as JSON or CSV",
        description="List a run's items that did not get done: row, action, account, site, "
        "state, the reason's code and text, the message (Jira's words), the target (the "
        "method and path, naming the issue), the HTTP status and the seconds waited.",
    )
    parser.add_argument("run", metavar="RUN", help="a run ID (r-YYYYMMDD-xxxxxx)")
    parser.add_argument("--format", choices=("json", "csv"), default="json")
    parser.add_argument("--output", type=Path, metavar="FILE", help="write here, not stdout")
    parser.add_argument(
        "--state",
        action="append",
        choices=[str(s) for s in PROBLEM_STATES],
        metavar="STATE",
        help="only items in this state (repeatable; default: failed, skipped, blocked, "
        "uncertain)",
    )
    add_journal_arguments(parser)
    parser.set_defaults(func=report_command)


def report_command(args: argparse.Namespace) -> int:
    path = journal_path(args)
    states = tuple(ItemState(s) for s in args.state) if args.state else PROBLEM_STATES
    return asyncio.run(write_report(path, args.run, args.format, args.output, states))


@contextlib.contextmanager
def _output(path: Path | None) -> Iterator[TextIO]:
    if path is None:
        yield sys.stdout
        return
    # newline="": the csv module writes its own line endings.
    try:
        handle = path.open("w", encoding="utf-8", newline="")
    except OSError as exc:
        raise InputError(f"--output {path}: can't be written ({exc.strerror or exc}); give a "
                         f"path in a folder you can write to") from None
    with handle:
        yield handle


async def write_report(
    path: JournalTarget,
    run_id: str,
    fmt: str,
    output: Path | None,
    states: Sequence[ItemState] = PROBLEM_STATES,
) -> int:
    async with open_journal(path, create=False, wait_s=0) as journal:
        run = await journal.get_run(run_id)  # RunNotFoundError before any file is written
        with _output(output) as out:
            await _write(journal, run, fmt, out, states)
    return ExitCode.OK


async def _write(
    journal: Journal, run: RunRecord, fmt: str, out: TextIO, states: Sequence[ItemState]
) -> None:
    items = journal.records(run.run_id, states)
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=FIELDS, lineterminator="\n")
        writer.writeheader()
        async for record in items:
            writer.writerow({k: _inert(v) for k, v in item_row(record).items()})
    else:
        # Streamed: the head, then one item per line, then the tail.
        head = json.dumps({**run_json(run), "states": [str(s) for s in states]}, indent=2)
        out.write(head[:-2] + ',\n  "items": [')
        first = True
        async for record in items:
            out.write(("\n    " if first else ",\n    ") + json.dumps(item_row(record)))
            first = False
        out.write("\n  ]\n}\n" if not first else "]\n}\n")


def item_row(record: ItemRecord) -> dict[str, Any]:
    return {
        "row": record.row_key,
        "action_index": record.action_index,
        "action": record.action,
        "account_id": record.account_id,
        "site": record.site,
        "state": str(record.state),
        **report_fields(record.reason, record.detail),
        "attempts": record.attempts,
        "updated_at": iso(record.updated_at),
    }
