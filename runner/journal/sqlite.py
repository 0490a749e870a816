"""The default journal: one SQLite file in WAL mode, written with group commit.

Every write (item marks, runs, requeues) goes to a writer thread (``DbThread``) that commits
whatever has arrived in one transaction and answers each write only after its COMMIT; the item
marks of a batch are one statement. Reads go to a second thread with its own connection, which
WAL lets read while the writer writes. A job is run by one process at a time (``JobLock``), and
each run this process opens holds its own job's lock.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Literal

from runner.errors import JournalError, NoJournalError, RunLockedError, RunNotFoundError
from runner.journal import queries as q
from runner.journal.base import (
    PROBLEM_STATES,
    ItemRecord,
    ItemRef,
    ItemState,
    RunCounts,
    RunHandle,
    RunRecord,
    RunState,
)
from runner.journal.dbthread import DbThread
from runner.journal.explain import explain
from runner.journal.lock import JobLock, lock_path
from runner.journal.marks import ItemMarks
from runner.journal.rules import (
    MAX_DETAIL_CHARS,
    MAX_REASON_CHARS,
    clean_text,
    job_identity,
    new_run_id,
    parse_states,
    requeueable,
    resumes,
    this_holder,
)
from runner.journal.schema import ensure_schema

# Items per page when streaming records (report, retry --failed).
PAGE_SIZE = 500

Synchronous = Literal["FULL", "NORMAL"]


class SqliteJournal(ItemMarks):
    """``async with SqliteJournal(path) as journal:`` (see ``Journal`` for the methods).

    ``synchronous="FULL"`` (the default) fsyncs the WAL at every commit, so an item journaled
    ``started`` survives even a power loss before its request leaves: "durable before effect"
    holds for the machine, not only the process. ``NORMAL`` survives a crash of the process
    (SIGKILL: the OS has the data) but may lose the last commits on power loss. With group
    commit one fsync serves every item in flight, so FULL costs little (``bench/README.md``,
    "Journal overhead"). NORMAL remains for disks whose fsync is very slow.
    ``create=False`` opens only an existing journal (``status``, ``report``).
    """

    def __init__(
        self,
        path: Path | str,
        *,
        synchronous: Synchronous = "FULL",
        create: bool = True,
        clock: Callable[[], float] = time.time,
    ):
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
        self.path = Path(path)
        self._synchronous = synchronous
        self._create = create
        self._clock = clock
        self._writer: DbThread | None = None
        self._reader: DbThread | None = None
        # Runs this journal opened, with their job locks; changed only by the writer thread.
        self._held: dict[str, JobLock] = {}

    # -- lifetime -----------------------------------------------------------------------------

    async def open(self) -> None:
        if self._writer is not None:
            return
        self._writer = DbThread(
            "journal-writer", self._connect_writer, begin="BEGIN IMMEDIATE",
            translate=partial(explain, self.path),
        )
        try:
            await self._writer.call(partial(ensure_schema, where=str(self.path)))
        except BaseException:
            await self._writer.stop()
            self._writer = None
            raise
        self._reader = DbThread("journal-reader", self._connect_reader,
                                translate=partial(explain, self.path))

    async def close(self) -> None:
        writer, reader = self._writer, self._reader
        self._writer = self._reader = None
        if writer is not None:
            await writer.call(self._release_all)
            await writer.stop()
        if reader is not None:
            await reader.stop()

    def _connect_writer(self) -> sqlite3.Connection:
        if not self._create and not self.path.exists():
            raise NoJournalError(self.path)
        if self._create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            conn.close()
            raise JournalError(f"{self.path}: the journal needs WAL mode, got {mode}")
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    def _connect_reader(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, isolation_level=None, timeout=30.0)

    def _write(self) -> DbThread:
        if self._writer is None:
            raise JournalError("the journal is not open (use `async with SqliteJournal(...)`)")
        return self._writer

    def _read(self) -> DbThread:
        if self._reader is None:
            raise JournalError("the journal is not open (use `async with SqliteJournal(...)`)")
        return self._reader

    @property
    def batches(self) -> tuple[int, int]:
        """The writer's (commits, writes) so far: writes / commits is the group-commit factor
        (item marks are most writes: two per item, against a few per run)."""
        if self._writer is None:
            return (0, 0)
        return (self._writer.batches, self._writer.operations)

    # -- runs (writer thread) -----------------------------------------------------------------

    async def open_run(
        self,
        job_name: str,
        job_path: str,
        job_fingerprint: str,
        config_fingerprint: str,
        job_text: str,
        *,
        fresh: bool = False,
    ) -> RunHandle:
        ident = job_identity(job_path)
        lock = await asyncio.to_thread(self._try_lock, ident)

        def op(conn: sqlite3.Connection) -> RunHandle:
            if lock is None:
                raise self._locked(conn, ident)
            latest = q.latest_run(conn, ident)
            if latest is not None and resumes(
                latest,
                job_path=ident,
                job_fingerprint=job_fingerprint,
                job_text=job_text,
                fresh=fresh,
            ):
                q.set_running(conn, latest.run_id, this_holder(), config_fingerprint)
                changed = latest.config_fingerprint != config_fingerprint
                extends = latest if latest.state is RunState.FINISHED else None
                handle = RunHandle(self._run(conn, latest.run_id), True, changed, extends)
            else:
                run = self._insert_run(
                    conn, job_name, ident, job_fingerprint, config_fingerprint, job_text
                )
                handle = RunHandle(run, False)
            self._held[handle.run_id] = lock
            return handle

        return await self._open_with(lock, op)

    async def resume(self, run_id: str) -> RunHandle:
        job = (await self._read().call(lambda conn: self._run(conn, run_id))).job_path
        lock = await asyncio.to_thread(self._try_lock, job)

        def op(conn: sqlite3.Connection) -> RunHandle:
            if lock is None:
                raise self._locked(conn, job)
            run = self._run(conn, run_id)
            q.set_running(conn, run_id, this_holder(), run.config_fingerprint)
            self._held[run_id] = lock
            return RunHandle(self._run(conn, run_id), True)

        return await self._open_with(lock, op)

    async def _open_with(
        self, lock: JobLock | None, op: Callable[[sqlite3.Connection], RunHandle]
    ) -> RunHandle:
        """Run ``op`` (which records ``lock`` as held); the lock is released if ``op`` fails."""
        try:
            return await self._write().call(op)
        except BaseException:
            if lock is not None:
                lock.release()
            raise

    async def claim(self, run_id: str, row_keys: Sequence[str]) -> Sequence[str]:
        # The job lock makes this process the run's only worker: every row is ours.
        self._check_held(run_id)
        return list(row_keys)

    async def set_total(self, run_id: str, total_items: int) -> None:
        self._check_held(run_id)
        total = int(total_items)
        await self._write().call(lambda conn: q.set_total(conn, run_id, total))

    async def finish_run(self, run_id: str, state: RunState | str) -> None:
        final = RunState(state)
        self._check_held(run_id)

        def op(conn: sqlite3.Connection) -> None:
            q.set_ended(conn, run_id, final, self._clock())
            # Released before this batch commits, yet safe: a process that takes the lock next
            # reads the run inside BEGIN IMMEDIATE, which waits for this commit.
            lock = self._held.pop(run_id, None)
            if lock is not None:
                lock.release()

        await self._write().call(op)

    async def requeue(self, run_id: str, states: Sequence[str] = (ItemState.FAILED,)) -> int:
        wanted = requeueable(states)

        def op(conn: sqlite3.Connection) -> int:
            run = self._run(conn, run_id)
            # Not while another process runs the job: its workers would race the change.
            borrowed = None if run_id in self._held else self._lock_job(conn, run.job_path)
            try:
                return q.requeue(conn, run, wanted, self._clock())
            finally:
                if borrowed is not None:
                    borrowed.release()

        return await self._write().call(op)

    # -- items (writer thread) ----------------------------------------------------------------

    def _submit(
        self,
        run_id: str,
        item: ItemRef,
        state: ItemState,
        reason: str | None = None,
        detail: str | None = None,
        *,
        result: str | None = None,
    ) -> asyncio.Future[None]:
        self._check_held(run_id)
        # Redacted here, on the event loop's side, so the writer thread only writes.
        mark = q.Mark.of(run_id, item, state, clean_text(reason, MAX_REASON_CHARS),
                         clean_text(detail, MAX_DETAIL_CHARS), result, self._clock())
        # Marks adjacent in a batch become one statement (``q.mark_items``).
        return self._write().submit_grouped(q.mark_items, mark)

    # -- reads (reader thread) ----------------------------------------------------------------

    async def states(self, run_id: str, row_keys: Sequence[str]) -> Mapping[str, ItemRecord]:
        keys = list(dict.fromkeys(row_keys))
        return await self._read().call(lambda conn: q.item_states(conn, run_id, keys))

    async def records(
        self, run_id: str, states: Sequence[str] = PROBLEM_STATES
    ) -> AsyncIterator[ItemRecord]:
        for state in parse_states(states):
            after: tuple[str, int] = ("", -1)
            while True:
                page = await self._read().call(
                    partial(q.item_page, run_id=run_id, state=state, after=after, size=PAGE_SIZE)
                )
                for record in page:
                    yield record
                if len(page) < PAGE_SIZE:
                    break
                after = (page[-1].row_key, page[-1].action_index)

    async def get_run(self, run_id: str) -> RunRecord:
        return await self._read().call(lambda conn: self._run(conn, run_id))

    async def latest_run(self, job_path: str) -> RunRecord | None:
        ident = job_identity(job_path)
        return await self._read().call(lambda conn: q.latest_run(conn, ident))

    async def done_by_action(self, run_id: str) -> Mapping[int, int]:
        return await self._read().call(lambda conn: q.done_by_action(conn, run_id))

    async def runs(self, limit: int = 20) -> Sequence[RunRecord]:
        return await self._read().call(lambda conn: q.latest_runs(conn, limit))

    async def counts(self, run_id: str) -> RunCounts:
        return await self._read().call(lambda conn: q.run_counts(conn, self._run(conn, run_id)))

    # -- helpers (in the threads) -------------------------------------------------------------

    def _try_lock(self, ident: str) -> JobLock | None:
        """The job's lock, or None while another open file holds it (another process, or
        another run of this one).

        Taken before any transaction of ours. A run that died left nothing to wait for: its
        writer thread died with it, and SQLite rolled back the transaction it had open.
        """
        path = lock_path(self.path, ident)
        try:
            return JobLock.try_acquire(path, this_holder())
        except OSError as exc:
            raise explain(path, exc) from None

    def _run(self, conn: sqlite3.Connection, run_id: str) -> RunRecord:
        run = q.get_run(conn, run_id)
        if run is None:
            raise RunNotFoundError(run_id, self.path)
        return run

    def _lock_job(self, conn: sqlite3.Connection, ident: str) -> JobLock:
        lock = JobLock.try_acquire(lock_path(self.path, ident), this_holder())
        if lock is None:
            raise self._locked(conn, ident)
        return lock

    def _locked(self, conn: sqlite3.Connection, ident: str) -> RunLockedError:
        latest = q.latest_run(conn, ident)
        run_id = latest.run_id if latest is not None else f"of {ident}"
        return RunLockedError(run_id, JobLock.holder(lock_path(self.path, ident)))

    def _insert_run(
        self,
        conn: sqlite3.Connection,
        job_name: str,
        ident: str,
        job_fp: str,
        config_fp: str,
        job_text: str,
    ) -> RunRecord:
        now = self._clock()
        for _ in range(10):
            run = RunRecord(
                run_id=new_run_id(now),
                job_name=job_name,
                job_path=ident,
                job_fingerprint=job_fp,
                config_fingerprint=config_fp,
                job_text=job_text,
                started_at=now,
                ended_at=None,
                state=RunState.RUNNING,
                total_items=None,
                holder=this_holder(),
            )
            if q.insert_run(conn, run):
                return run
        raise JournalError("could not find a free run ID")  # 16M IDs a day: never in practice

    def _check_held(self, run_id: str) -> None:
        if run_id not in self._held:
            raise JournalError(f"run {run_id} is not open in this journal (open_run or resume)")

    def _release_all(self, conn: sqlite3.Connection) -> None:
        for lock in self._held.values():
            lock.release()
        self._held.clear()

