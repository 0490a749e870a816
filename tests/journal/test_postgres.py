"""What only the PostgreSQL journal meets: a server that can't be reached, a connection cut
mid-run (waited out, then the same writes), and a job taken over while it was away."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from runner.cli import main
from runner.errors import JournalError
from runner.events import Event, JournalReconnected, JournalWaiting
from runner.events.base import Emitter
from runner.journal import ItemRef, ItemState, PostgresJournal

MakeItem = Callable[..., ItemRef]


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def event(self, ev: Event, /) -> None:
        self.events.append(ev)


def _cut_journal_connections(url: str) -> int:
    """Ends every session of the journal (as a restart does to it), from outside."""
    with psycopg.connect(url, autocommit=True) as admin:
        row = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND application_name = 'forge-runner journal'").fetchone()
        assert row is not None
        return int(row[0])


def test_an_unreachable_database_at_start_is_one_line_without_the_password(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """status on a URL nobody listens at exits 6 with one line naming the URL, its password
    left out, and what to do."""
    url = "postgresql://runner:s3cret-pw@127.0.0.1:1/forge"
    assert main(["status", "--journal", url]) == 6
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "postgresql://runner@127.0.0.1:1/forge" in err
    assert "s3cret-pw" not in err
    assert "can't connect" in err and "server is running" in err


def test_status_of_a_database_without_a_journal_creates_nothing(
    pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """status on a database that holds no journal exits 2 saying so, and makes no tables."""
    assert main(["status", "--journal", pg_url]) == 2
    assert "no journal" in capsys.readouterr().err
    with psycopg.connect(pg_url) as pg:
        row = pg.execute("SELECT to_regclass('journal_schema') IS NULL").fetchone()
        assert row is not None and row[0] is True


async def test_a_cut_connection_is_waited_out_and_the_write_lands(
    pg_url: str, job_file: Path, item: MakeItem
) -> None:
    """Every journal session cut mid-run: the next write says the journal waits, reconnects
    (taking the job's lock again), and is durable; reads go on too, and the job stays locked
    to this process."""
    seen = Recorder()
    async with PostgresJournal(pg_url, emit=Emitter(seen)) as journal:
        run = (await journal.open_run("m", str(job_file), "j", "c", "")).run_id
        await journal.mark_started(run, item(0))
        assert await asyncio.to_thread(_cut_journal_connections, pg_url) >= 1
        await journal.mark_done(run, item(0), {"id": "1"})
        await journal.mark_started(run, item(1))
        got = await journal.states(run, [item(0).row_key, item(1).row_key])
        assert got[item(0).key].state is ItemState.DONE
        assert got[item(1).key].state is ItemState.STARTED
        async with PostgresJournal(pg_url) as other:
            with pytest.raises(JournalError, match="already running"):
                await other.open_run("m", str(job_file), "j", "c", "")
    assert any(isinstance(ev, JournalWaiting) for ev in seen.events)
    assert any(isinstance(ev, JournalReconnected) for ev in seen.events)
    waiting = next(ev for ev in seen.events if isinstance(ev, JournalWaiting))
    assert waiting.journal == pg_url  # no password in this URL; see the test above


async def test_a_job_taken_over_while_away_gets_no_more_writes(
    pg_url: str, job_file: Path, item: MakeItem
) -> None:
    """When another process takes the job while this one's connection is cut, this one's
    next write fails saying so, and nothing of it reaches the journal."""
    async with PostgresJournal(pg_url) as journal:
        run = (await journal.open_run("m", str(job_file), "j", "c", "")).run_id
        await asyncio.to_thread(_cut_journal_connections, pg_url)
        async with PostgresJournal(pg_url) as other:
            handle = await other.open_run("m", str(job_file), "j", "c", "")
            assert (handle.run_id, handle.resumed) == (run, True)
            with pytest.raises(JournalError, match="no longer holds"):
                await journal.mark_started(run, item(0))
            assert await other.states(run, [item(0).row_key]) == {}
            with pytest.raises(JournalError, match="no longer holds"):
                await journal.mark_started(run, item(1))
