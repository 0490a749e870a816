"""Schema versions, on both durable journals: migrated forward when opened, and a journal
newer than the code refused with one line (exit 6)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from runner.cli import main
from runner.journal import Journal, pgschema, schema
from runner.journal.open import JournalTarget


def _version(target: JournalTarget) -> int:
    if isinstance(target, Path):
        conn = sqlite3.connect(target)
        try:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])
        finally:
            conn.close()
    with psycopg.connect(target) as pg:
        row = pg.execute("SELECT version FROM journal_schema").fetchone()
        assert row is not None
        return int(row[0])


def _set_version(target: JournalTarget, version: int) -> None:
    if isinstance(target, Path):
        conn = sqlite3.connect(target)
        try:
            conn.execute(f"PRAGMA user_version = {version}")
        finally:
            conn.close()
        return
    with psycopg.connect(target) as pg:
        pg.execute("UPDATE journal_schema SET version = %s", (version,))


def _has_column(target: JournalTarget, table: str, column: str) -> bool:
    if isinstance(target, Path):
        conn = sqlite3.connect(target)
        try:
            return any(row[1] == column for row in conn.execute(f"PRAGMA table_info({table})"))
        finally:
            conn.close()
    with psycopg.connect(target) as pg:
        row = pg.execute("SELECT count(*) FROM information_schema.columns "
                         "WHERE table_name = %s AND column_name = %s", (table, column)).fetchone()
        return bool(row and row[0])


async def test_a_journal_is_migrated_forward_when_opened(
    target: JournalTarget, reopen: Callable[..., Journal], job_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A journal written at this code's version, opened by code that knows a step more, is
    moved to the new version (the step applied) and keeps its runs."""
    async with reopen() as journal:
        run = (await journal.open_run("m", str(job_file), "j", "c", "")).run_id
    latest = len(schema.MIGRATIONS if isinstance(target, Path) else pgschema.MIGRATIONS)
    assert await asyncio.to_thread(_version, target) == latest
    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS,
                                               "ALTER TABLE runs ADD COLUMN note TEXT;"])
    monkeypatch.setattr(pgschema, "MIGRATIONS", [*pgschema.MIGRATIONS,
                                                 ("ALTER TABLE runs ADD COLUMN note text",)])
    async with reopen() as journal:
        assert (await journal.get_run(run)).run_id == run
    assert await asyncio.to_thread(_version, target) == latest + 1
    assert await asyncio.to_thread(_has_column, target, "runs", "note")


async def test_a_version_1_postgresql_journal_gains_the_lanes_tables(
    pg_url: str, job_file: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A PostgreSQL journal made by the code before lanes (version 1), with a run and an item,
    opened by this code: the latest version, its run and item kept, and the lanes' tables, the
    items' fence column and the runs' placement there (a run of version 1 is not shared by
    lanes)."""
    from runner.journal import ItemRef, PostgresJournal

    monkeypatch.setattr(pgschema, "MIGRATIONS", pgschema.MIGRATIONS[:1])
    async with PostgresJournal(pg_url) as journal:
        run = (await journal.open_run("m", str(job_file), "j", "c", "")).run_id
        await journal.mark_done(run, ItemRef("row-1", 0, "acme", "acct", "comment.add"))
        await journal.finish_run(run, "finished")
    assert await asyncio.to_thread(_version, pg_url) == 1
    monkeypatch.undo()
    async with PostgresJournal(pg_url) as journal:
        assert (await journal.get_run(run)).counts == {"done": 1}
    assert await asyncio.to_thread(_version, pg_url) == pgschema.schema_version() == 3
    for table, column in (("items", "fence"), ("lanes", "lease_until"), ("workers", "pid"),
                          ("run_rows", "fields"), ("flows", "vtime"), ("runs", "lanes"),
                          ("runs", "placed")):
        assert await asyncio.to_thread(_has_column, pg_url, table, column), (table, column)


async def test_a_journal_newer_than_the_code_is_refused_in_one_line(
    target: JournalTarget, reopen: Callable[..., Journal], job_file: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A journal whose schema version is past this code's: status exits 6 with one line that
    names the journal and says to upgrade forge-runner; the journal is left as it was."""
    async with reopen() as journal:
        await journal.open_run("m", str(job_file), "j", "c", "")
    await asyncio.to_thread(_set_version, target, 99)
    code = await asyncio.to_thread(main, ["status", "--journal", str(target)])
    err = capsys.readouterr().err
    assert code == 6
    assert len(err.strip().splitlines()) == 1
    assert "newer forge-runner" in err and "upgrade forge-runner" in err
    assert "version 99" in err
    assert await asyncio.to_thread(_version, target) == 99
