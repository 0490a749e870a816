"""``forge-runner export RUN``: what a run made, for a migration's legacy-ID -> Jira-ID map.

    forge-runner export RUN [--field COLUMN]... [--action NAME]... [--all]
                            [--format csv|jsonl|json] [--output FILE]
                            [--config FILE | --journal PATH] [--job FILE]

Each done item that made something (the journal's result: ``id``, ``key``, ``self`` of what
was created) with its row key, action, site and account; ``--all`` lists every done item. A
separate command from ``report``, which lists what did *not* get done, with reasons: this lists
what did, with what came back, and is what a migration hands on.

Row fields (``--field legacy_id``) come from the job's source, read again: the journal holds no
row data, only row keys. The source is streamed in order and each chunk of rows is joined with
the journal's items of those keys, so a million rows need no more memory than a thousand; items
come out in source order. Without ``--field`` the source is not read at all (it may be gone):
items stream from the journal in row key order. A source re-read may have changed since the
run: a done item whose row key is no longer in it is counted and said on stderr.

In CSV, a value a spreadsheet would run as a formula gets a ``'`` in front (as in ``report``).
The file given with ``--output`` is written beside its path and renamed into place once whole.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import os
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, TextIO

from runner.commands import DEFAULT_CONFIG
from runner.commands.spreadsheet import inert
from runner.commands.status import add_journal_arguments, journal_path, run_json
from runner.config.configfile import load_config
from runner.errors import ExitCode, InputError
from runner.job.jobfile import Job, load_job
from runner.job.selection import from_identity
from runner.journal import ItemRecord, ItemState, Journal, RunRecord
from runner.journal.base import item_key
from runner.journal.open import JournalTarget, open_journal

CREATED = ("id", "key", "self")
FIXED = ("row", "action_index", "action", "site", "account_id", *CREATED)
CHUNK = 500  # source rows joined with the journal at a time


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "export",
        help="what a run made (row, action, id, key, self), with chosen row fields: a "
        "migration's map, as CSV, JSON Lines or JSON",
        description="Export a run's done items that made something: row key, the row fields "
        "asked for, action, site, account and what was created (id, key, self).",
    )
    parser.add_argument("run", metavar="RUN", help="a run ID (r-YYYYMMDD-xxxxxx; `forge-runner "
                        "status` lists them)")
    parser.add_argument("--field", action="append", default=[], metavar="COLUMN",
                        help="a column of the job's source to add (repeatable; read again from "
                        "the source, joined by row key)")
    parser.add_argument("--action", action="append", default=[], metavar="NAME",
                        help="only items of this action, by type (comment.add) or index "
                        "(repeatable)")
    parser.add_argument("--all", action="store_true",
                        help="every done item, those that made nothing too (a property set, "
                        "a transition)")
    parser.add_argument("--format", choices=("csv", "jsonl", "json"), default="csv",
                        help="csv (default), jsonl (one item a line) or json (one document)")
    parser.add_argument("--output", type=Path, metavar="FILE",
                        help="write here (whole or not at all), not stdout")
    parser.add_argument("--job", type=Path, metavar="FILE",
                        help="the job file whose source --field reads (default: the run's own)")
    add_journal_arguments(parser)
    parser.set_defaults(func=export_command)


@dataclass(frozen=True)
class Wanted:
    """Which done items are exported, and with which row fields."""

    fields: tuple[str, ...]
    actions: frozenset[str]  # names or indexes as given; empty: every action
    every: bool  # --all

    def wants(self, record: ItemRecord) -> bool:
        if record.state is not ItemState.DONE:
            return False
        if self.actions and not ({record.action, str(record.action_index)} & self.actions):
            return False
        return self.every or bool(record.result)


def export_command(args: argparse.Namespace) -> int:
    if args.field and args.journal is not None:
        raise InputError("export --field reads the job's source, which takes the config: give "
                         "--config FILE (its runner.journal is the journal) instead of --journal")
    selection = Wanted(tuple(dict.fromkeys(args.field)), frozenset(args.action), args.all)
    clash = [f for f in selection.fields if f in FIXED]
    if clash:
        raise InputError(f"--field {clash[0]}: the export has a column of that name already "
                         f"({', '.join(FIXED)}); choose another column")
    return asyncio.run(_export(args, journal_path(args), selection))


async def _export(args: argparse.Namespace, path: JournalTarget, selection: Wanted) -> int:
    async with open_journal(path, create=False, wait_s=0) as journal:
        run = await journal.get_run(args.run)  # RunNotFoundError before any file is written
        job = _job(args, run, selection) if selection.fields else None
        with _output(args.output) as out:
            if job is None:
                items: AsyncIterator[dict[str, Any]] = _from_journal(journal, run, selection)
            else:
                items = _joined(journal, run, job, selection)
            written = await _write(items, run, selection, args.format, out)
        if job is not None:
            expected = await _count(journal, run, selection)
            if expected > written:
                print(f"forge-runner: export: {expected - written} done item(s) of run "
                      f"{run.run_id} have no row in {job.source.description} any more (the "
                      f"source changed since the run); without --field they are all listed",
                      file=sys.stderr)
    return ExitCode.OK


def _job(args: argparse.Namespace, run: RunRecord, selection: Wanted) -> Job:
    config = load_config(args.config or DEFAULT_CONFIG)
    stored, _ = from_identity(run.job_path)  # a trial's rows are found in the whole source
    job = load_job(args.job or stored, config)
    columns = job.source.columns
    unknown = [f for f in selection.fields if f not in columns]
    if unknown:
        raise InputError(f"--field {unknown[0]}: not a column of {job.source.description} "
                         f"(its columns: {', '.join(columns)})")
    return job


def _item(record: ItemRecord, fields: dict[str, str] | None) -> dict[str, Any]:
    result = dict(record.result or {})
    out: dict[str, Any] = {"row": record.row_key}
    if fields is not None:
        out["fields"] = fields
    out.update(action_index=record.action_index, action=record.action, site=record.site,
               account_id=record.account_id, created=result)
    return out


async def _from_journal(
    journal: Journal, run: RunRecord, selection: Wanted
) -> AsyncIterator[dict[str, Any]]:
    async for record in journal.records(run.run_id, (ItemState.DONE,)):
        if selection.wants(record):
            yield _item(record, None)


async def _joined(
    journal: Journal, run: RunRecord, job: Job, selection: Wanted
) -> AsyncIterator[dict[str, Any]]:
    """The source's rows in order, a chunk at a time, each with its wanted items."""
    rows = iter(job.source.rows())
    indexes = [a.index for a in job.actions]
    while chunk := list(islice(rows, CHUNK)):
        records = await journal.states(run.run_id, [row.key for row in chunk])
        for row in chunk:
            for index in indexes:
                record = records.get(item_key(row.key, index))
                if record is not None and selection.wants(record):
                    yield _item(record, {f: row.fields.get(f, "") for f in selection.fields})


async def _count(journal: Journal, run: RunRecord, selection: Wanted) -> int:
    n = 0
    async for record in journal.records(run.run_id, (ItemState.DONE,)):
        n += selection.wants(record)
    return n


async def _write(items: AsyncIterator[dict[str, Any]], run: RunRecord, selection: Wanted,
                 fmt: str, out: TextIO) -> int:
    n = 0
    if fmt == "csv":
        columns = ["row", *selection.fields, *FIXED[1:]]
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        async for item in items:
            writer.writerow([inert(v) for v in _flat(item, selection.fields)])
            n += 1
    elif fmt == "jsonl":
        async for item in items:
            out.write(json.dumps(item, ensure_ascii=False) + "\n")
            n += 1
    else:
        # Streamed: the head, then one item per line, then the tail.
        head = json.dumps({"schema": "forge-runner.export/1", **run_json(run),
                           "fields": list(selection.fields)}, indent=2, ensure_ascii=False)
        out.write(head[:-2] + ',\n  "items": [')
        async for item in items:
            out.write(("\n    " if n == 0 else ",\n    ") + json.dumps(item, ensure_ascii=False))
            n += 1
        out.write("\n  ]\n}\n" if n else "]\n}\n")
    return n


def _flat(item: dict[str, Any], fields: Sequence[str]) -> list[Any]:
    created = item["created"]
    values = item.get("fields", {})
    return [item["row"], *(values.get(f, "") for f in fields), item["action_index"],
            item["action"], item["site"], item["account_id"],
            *(created.get(k, "") for k in CREATED)]


@contextlib.contextmanager
def _output(path: Path | None) -> Iterator[TextIO]:
    """stdout, or a file written beside ``path`` and renamed into place once whole: a reader
    never finds half a map."""
    if path is None:
        yield sys.stdout
        return
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp",
                                   dir=path.parent if str(path.parent) else ".")
    except OSError as exc:
        raise InputError(f"--output {path}: can't be written ({exc.strerror or exc}); give a "
                         "path in a folder you can write to") from None
    try:
        # newline="": the csv module writes its own line endings.
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            yield handle
        # mkstemp makes it private (0600); the map is an ordinary file, as `>` would make it.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
