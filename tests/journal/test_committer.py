"""The process that commits item marks: it outlives signals meant for the runner, ends with
the runner, and a committer that died fails the marks instead of hanging them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from runner.errors import JournalError
from runner.journal import ItemRef, ItemState, SqliteJournal
from runner.journal.lock import JobLock, lock_path
from runner.journal.rules import job_identity

MakeItem = Callable[..., ItemRef]


def _child_pid(journal: SqliteJournal) -> int:
    pid = journal.committer_pid
    assert pid is not None, "the committer starts when a run is opened"
    return pid


async def test_committer_pid_names_the_committer_only_while_it_runs(
    open_sqlite: Callable[[], SqliteJournal], job_file: Path
) -> None:
    """``committer_pid`` (benchmarks place the process on a core by it) is None before a run
    is opened and after the journal closes, and in between names a live child of this one."""
    journal = open_sqlite()
    async with journal:
        assert journal.committer_pid is None
        await journal.open_run("migration", str(job_file), "j", "c", "t")
        pid = _child_pid(journal)
        with open(f"/proc/{pid}/stat") as stat:
            assert int(stat.read().rsplit(")", 1)[1].split()[1]) == os.getpid()
    assert journal.committer_pid is None


async def test_the_committer_ignores_sigint_and_sigterm(
    open_sqlite: Callable[[], SqliteJournal], item: MakeItem, job_file: Path
) -> None:
    """Ctrl-C reaches every process of the terminal's group: the committer must keep
    journaling while the runner drains, so SIGINT and SIGTERM leave it running."""
    async with open_sqlite() as journal:
        run = (await journal.open_run("migration", str(job_file), "j", "c", "t")).run_id
        await journal.mark_started(run, item(1))
        pid = _child_pid(journal)
        os.kill(pid, signal.SIGINT)
        os.kill(pid, signal.SIGTERM)
        await journal.mark_done(run, item(1))
        got = await journal.states(run, [item(1).row_key])
        assert got[item(1).key].state is ItemState.DONE
        assert journal._committer._proc is not None
        assert journal._committer._proc.poll() is None


async def test_a_dead_committer_fails_marks_instead_of_hanging(
    open_sqlite: Callable[[], SqliteJournal], item: MakeItem, job_file: Path
) -> None:
    """If the committer process is killed, a mark waiting for it and every later one raise
    ``JournalError``: the run stops rather than send a request it could not journal."""
    async with open_sqlite() as journal:
        run = (await journal.open_run("migration", str(job_file), "j", "c", "t")).run_id
        await journal.mark_started(run, item(1))
        proc = journal._committer._proc
        assert proc is not None
        proc.kill()
        await asyncio.to_thread(proc.wait)
        with pytest.raises(JournalError, match="committer"):
            await asyncio.wait_for(journal.mark_started(run, item(2)), 30)
        with pytest.raises(JournalError, match="committer"):
            await journal.mark_started(run, item(3))


CHILD = """
import asyncio, os, sys
from runner.journal import ItemRef, SqliteJournal

async def main():
    journal = SqliteJournal(sys.argv[1])
    await journal.open()
    handle = await journal.open_run("migration", sys.argv[2], "j", "c", "t")
    await journal.mark_started(handle.run_id, ItemRef("row-1", 0, "acme", "acc-1", "x"))
    print(journal._committer._proc.pid, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

asyncio.run(main())
"""


async def test_the_committer_ends_when_the_runner_is_killed(
    tmp_path: Path, journal_file: Path, job_file: Path
) -> None:
    """SIGKILL of the runner closes the committer's input: it exits by itself, leaving no
    process behind."""
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    runner = await asyncio.create_subprocess_exec(
        sys.executable, str(script), str(journal_file), str(job_file),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert runner.stdout is not None
        committer_pid = int(await asyncio.wait_for(runner.stdout.readline(), 60))
        # A pidfd becomes readable when the process ends, child of ours or not.
        pidfd = os.pidfd_open(committer_pid)
        ended = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_reader(pidfd, ended.set)
        try:
            assert _alive(committer_pid)
            runner.kill()
            await runner.wait()
            await asyncio.wait_for(ended.wait(), 30)
        finally:
            loop.remove_reader(pidfd)
            os.close(pidfd)
        assert not _alive(committer_pid)
    finally:
        if runner.returncode is None:
            runner.kill()
            await runner.wait()


MID_COMMIT = """
import asyncio, sys
from runner.journal import ItemRef, SqliteJournal

def reads(pid):
    with open(f"/proc/{pid}/io") as io:
        return int(next(line for line in io if line.startswith("rchar:")).split()[1])

async def main():
    journal = SqliteJournal(sys.argv[1])
    await journal.open()
    handle = await journal.open_run("migration", sys.argv[2], "j", "c", "t")
    ref = ItemRef("row-1", 0, "acme", "acc-1", "x")
    await journal.mark_started(handle.run_id, ref)
    print(journal.committer_pid, flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)  # the test holds the write lock now
    before = reads(journal.committer_pid)
    journal.submit_done(handle.run_id, ref, {"id": "10001"})
    # Polled: nothing tells another process that the committer read its pipe. Once it has,
    # it is in its transaction, waiting for the test's write lock.
    while reads(journal.committer_pid) == before:
        await asyncio.sleep(0.001)
    print("read", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)

asyncio.run(main())
"""


async def test_a_run_killed_mid_commit_keeps_its_job_locked_until_the_commit_lands(
    tmp_path: Path, journal_file: Path, job_file: Path
) -> None:
    """The committer holds the run's job lock with the runner. A runner killed while a
    transaction of its committer waits for the database leaves the job locked until that
    transaction has committed and the committer has exited; the run that resumes waits, then
    reads the item as that commit left it (``done``), never as it was before (``started``,
    which would send it again and have its ``started`` refused as already done)."""
    script = tmp_path / "mid_commit.py"
    script.write_text(MID_COMMIT)
    runner = await asyncio.create_subprocess_exec(
        sys.executable, str(script), str(journal_file), str(job_file),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )
    blocker = sqlite3.connect(journal_file, isolation_level=None, timeout=0)
    loop = asyncio.get_running_loop()
    try:
        assert runner.stdin is not None and runner.stdout is not None
        committer_pid = int(await asyncio.wait_for(runner.stdout.readline(), 60))
        pidfd = os.pidfd_open(committer_pid)
        ended = asyncio.Event()
        loop.add_reader(pidfd, ended.set)
        # Opened (its schema checked) before the blocker takes the write lock.
        async with SqliteJournal(journal_file) as journal:
            blocker.execute("BEGIN IMMEDIATE")
            runner.stdin.write(b"go\n")
            await runner.stdin.drain()
            assert await asyncio.wait_for(runner.stdout.readline(), 60) == b"read\n"
            runner.kill()
            await runner.wait()

            # The runner is dead; its committer waits for the blocker, holding the job lock.
            assert _alive(committer_pid)
            lock = lock_path(journal_file, job_identity(job_file))
            assert JobLock.try_acquire(lock, "test") is None
            resuming = asyncio.create_task(
                journal.open_run("migration", str(job_file), "j", "c", "t"))
            blocker.execute("COMMIT")
            handle = await asyncio.wait_for(resuming, 60)
            assert handle.resumed
            assert ended.is_set(), "the run resumed while the dead run's committer still ran"
            got = await journal.states(handle.run_id, ["row-1"])
            assert got["row-1#0"].state is ItemState.DONE
    finally:
        blocker.close()
        if runner.returncode is None:
            runner.kill()
            await runner.wait()
        with contextlib.suppress(NameError, ValueError):
            loop.remove_reader(pidfd)
            os.close(pidfd)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
