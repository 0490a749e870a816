"""The durable journals: durable before they return, across SIGKILL, one process per job (on
SQLite and on PostgreSQL); SQLite's group commit and file checks."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from runner.commands.status import runs_table
from runner.errors import JournalError, RunLockedError
from runner.journal import ItemRef, ItemState, Journal, SqliteJournal
from runner.journal.open import JournalTarget

MakeItem = Callable[..., ItemRef]

# A process that opens the job's run, journals one item done and one started, says so, then
# either kills itself at once (SIGKILL: no cleanup, no atexit, no flush) or waits to be killed;
# with "done", at a line on its input it queues the started item's done first, and says so.
CHILD = """
import asyncio, os, signal, sys
from runner.journal import ItemRef
from runner.journal.open import open_journal, parse_target

journal_path, job_path, then = sys.argv[1:4]

async def main():
    journal = open_journal(parse_target(journal_path))
    await journal.open()
    handle = await journal.open_run("migration", job_path, "job-1", "config-1", "text")
    await journal.mark_started(handle.run_id, ItemRef("row-1", 0, "acme", "acc-1", "comment.add"))
    await journal.mark_done(handle.run_id, ItemRef("row-1", 0, "acme", "acc-1", "comment.add"),
                            {"id": "10001"})
    await journal.mark_started(handle.run_id, ItemRef("row-2", 0, "acme", "acc-2", "comment.add"))
    print(handle.run_id, os.getpid(), flush=True)
    if then == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    if then == "done":
        journal.submit_done(handle.run_id, ItemRef("row-2", 0, "acme", "acc-2", "comment.add"))
        print("queued", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

asyncio.run(main())
"""


@pytest.fixture
def child_script(tmp_path: Path) -> Path:
    path = tmp_path / "child.py"
    path.write_text(CHILD)
    return path


async def _spawn(script: Path, journal_file: JournalTarget, job_file: Path, then: str) -> tuple[
    asyncio.subprocess.Process, str, int
]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), str(journal_file), str(job_file), then,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    run_id, pid = line.decode().split()
    return proc, run_id, int(pid)


async def test_started_survives_sigkill(
    child_script: Path, target: JournalTarget, reopen: Callable[..., Journal], job_file: Path
) -> None:
    """A process killed with SIGKILL right after ``mark_started`` returned leaves the item
    ``started`` (and the one before ``done``); status shows the run's process gone, and the
    job's next run resumes that run."""
    proc, run_id, _ = await _spawn(child_script, target, job_file, "kill")
    assert await asyncio.wait_for(proc.wait(), 60) == -signal.SIGKILL

    async with reopen() as journal:
        # Still "running" in the file; status tells that its process is gone.
        assert "its process is gone" in runs_table(await journal.runs())
        handle = await journal.open_run("migration", str(job_file), "job-1", "config-1", "text")
        assert (handle.run_id, handle.resumed) == (run_id, True)
        got = await journal.states(run_id, ["row-1", "row-2"])
        assert got["row-1#0"].state is ItemState.DONE
        assert got["row-1#0"].result == {"id": "10001"}
        assert (got["row-2#0"].state, got["row-2#0"].attempts) == (ItemState.STARTED, 1)


async def test_a_second_process_is_refused_until_the_first_dies(
    child_script: Path, target: JournalTarget, reopen: Callable[..., Journal], job_file: Path
) -> None:
    """While another process runs the job, opening it raises RunLockedError naming that
    process; when the holder dies, the lock is free and the run resumes at once."""
    proc, run_id, pid = await _spawn(child_script, target, job_file, "wait")
    try:
        async with reopen() as journal:
            with pytest.raises(RunLockedError) as caught:
                await journal.open_run("migration", str(job_file), "job-1", "config-1", "text")
            assert caught.value.run_id == run_id
            assert f"pid {pid}" in str(caught.value)
            with pytest.raises(RunLockedError):
                await journal.requeue(run_id, ["failed"])

            proc.kill()
            await asyncio.wait_for(proc.wait(), 60)
            handle = await journal.open_run("migration", str(job_file), "job-1", "config-1",
                                            "text")
            assert (handle.run_id, handle.resumed) == (run_id, True)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_a_run_killed_with_a_write_pending_resumes_at_once_without_it(
    child_script: Path, journal_file: Path, job_file: Path
) -> None:
    """A runner killed while its ``done`` waits for the database (another connection holds
    the write lock) leaves nothing to wait for: its writer died with it, so the next run
    takes the job at once and reads the item as last committed (``started``)."""
    proc, run_id, _ = await _spawn(child_script, journal_file, job_file, "done")
    blocker = sqlite3.connect(journal_file, isolation_level=None)
    try:
        assert proc.stdin is not None and proc.stdout is not None
        blocker.execute("BEGIN IMMEDIATE")
        proc.stdin.write(b"go\n")
        await proc.stdin.drain()
        assert await asyncio.wait_for(proc.stdout.readline(), 60) == b"queued\n"
        proc.kill()
        await asyncio.wait_for(proc.wait(), 60)
        blocker.execute("ROLLBACK")
        async with SqliteJournal(journal_file) as journal:
            # Far below the 40 s the committer's grace wait took when its holder was gone.
            async with asyncio.timeout(10):
                handle = await journal.open_run("migration", str(job_file), "job-1",
                                                "config-1", "text")
            assert (handle.run_id, handle.resumed) == (run_id, True)
            got = await journal.states(run_id, ["row-2"])
            assert (got["row-2#0"].state, got["row-2#0"].attempts) == (ItemState.STARTED, 1)
    finally:
        blocker.close()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_mark_returns_only_after_commit(
    journal_file: Path, open_sqlite: Callable[[], SqliteJournal], item: MakeItem,
    job_file: Path,
) -> None:
    """When ``mark_started`` returns, another connection to the file already sees the item."""
    async with open_sqlite() as journal:
        handle = await journal.open_run("migration", str(job_file), "job-1", "config-1", "t")
        await journal.mark_started(handle.run_id, item(1))
        seen = await asyncio.to_thread(_read_state, journal_file, item(1).row_key)
        assert seen == "started"


def _read_state(path: Path, row_key: str) -> str | None:
    conn = sqlite3.connect(path)
    try:
        row = conn.execute("SELECT state FROM items WHERE row_key = ?", (row_key,)).fetchone()
        return None if row is None else str(row[0])
    finally:
        conn.close()


async def test_group_commit_wakes_every_waiter(
    journal_file: Path, open_sqlite: Callable[[], SqliteJournal], item: MakeItem,
    job_file: Path,
) -> None:
    """Marks that queue up while the database is busy are committed together (at most the one
    already taken, then one for the rest), none is answered before its commit, and every
    awaiter is woken with its own answer."""
    async with open_sqlite() as journal:
        handle = await journal.open_run("migration", str(job_file), "job-1", "config-1", "t")
        run = handle.run_id
        await journal.mark_started(run, item(1000))  # the writer is connected and has written
        commits_before = journal.batches[0]
        # Another connection holds the write lock: the writer's next transaction waits.
        blocker = sqlite3.connect(journal_file, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            waiters = [asyncio.ensure_future(journal.mark_started(run, item(n)))
                       for n in range(200)]
            for _ in range(5):  # turns of the loop: the marks reach the writer's queue
                await asyncio.sleep(0)
            assert not any(w.done() for w in waiters)
            assert _read_state(journal_file, item(0).row_key) is None
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        answers = await asyncio.gather(*waiters, return_exceptions=True)
        assert answers == [None] * 200
        assert 1 <= journal.batches[0] - commits_before <= 2
        got = await journal.states(run, [item(n).row_key for n in range(200)])
        assert {(r.state, r.attempts) for r in got.values()} == {(ItemState.STARTED, 1)}
        assert len(got) == 200


async def test_a_failing_write_fails_alone_in_its_batch(
    open_sqlite: Callable[[], SqliteJournal], item: MakeItem, job_file: Path
) -> None:
    """A write refused inside a batch (starting a done item) raises for its own awaiter only;
    the others in the same batch commit."""
    async with open_sqlite() as journal:
        run = (await journal.open_run("migration", str(job_file), "j", "c", "t")).run_id
        await journal.mark_started(run, item(0))
        await journal.mark_done(run, item(0))
        results = await asyncio.gather(
            journal.mark_started(run, item(1)),
            journal.mark_started(run, item(0)),
            journal.mark_started(run, item(2)),
            return_exceptions=True,
        )
        assert results[0] is None and results[2] is None
        assert isinstance(results[1], JournalError)
        assert "already done" in str(results[1])
        got = await journal.states(run, [item(n).row_key for n in range(3)])
        assert [got[item(n).key].state for n in range(3)] == [
            ItemState.DONE, ItemState.STARTED, ItemState.STARTED
        ]


async def test_the_file_is_in_wal_mode(
    journal_file: Path, open_sqlite: Callable[[], SqliteJournal]
) -> None:
    """The journal file is in WAL mode, so status and report read while a run writes."""
    async with open_sqlite():
        pass
    mode = await asyncio.to_thread(_journal_mode, journal_file)
    assert mode == "wal"


def _journal_mode(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return str(conn.execute("PRAGMA journal_mode").fetchone()[0])
    finally:
        conn.close()


async def test_a_file_that_is_not_a_journal_is_refused(tmp_path: Path) -> None:
    """Opening another SQLite database, or a missing file without ``create``, fails clearly."""
    other = tmp_path / "other.db"
    await asyncio.to_thread(_make_other_db, other)
    with pytest.raises(JournalError, match="not a forge-runner journal"):
        async with SqliteJournal(other):
            pass
    with pytest.raises(JournalError, match="no journal"):
        async with SqliteJournal(tmp_path / "missing.db", create=False):
            pass


def _make_other_db(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
