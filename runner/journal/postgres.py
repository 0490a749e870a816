"""The journal on PostgreSQL: the same interface and rules as ``SqliteJournal``, for a journal
that several processes, on one host or several, share.

Writes go through one writer connection with group commit (``pgwriter.py``); reads go through
a small pool (``psycopg_pool``), one short statement or two per call, never a transaction held
open across anything else.

The job lock: ``pglock.py`` (why an advisory lock on the writer's connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool

from runner.errors import JournalError, NoJournalError, RunLockedError
from runner.events import Emitter
from runner.journal import pglanes as lanes
from runner.journal import pgqueries as q
from runner.journal.base import (
    ItemRef,
    ItemState,
    RunHandle,
    RunState,
)
from runner.journal.marks import ItemMarks
from runner.journal.outage import WAIT_S
from runner.journal.pglock import JobLocks
from runner.journal.pgreads import PgReads, one_line
from runner.journal.pgschema import ensure_schema
from runner.journal.pgurl import safe_url
from runner.journal.pgwriter import PgWriter
from runner.journal.queries import Mark
from runner.journal.rules import (
    MAX_DETAIL_CHARS,
    MAX_REASON_CHARS,
    clean_text,
    job_identity,
    requeueable,
    resumes,
    this_holder,
)

T = TypeVar("T")
Conn = q.Conn
# (run, site, account) -> the (owner, fence) this process holds the lane under, or LaneLostError.
LaneGuard = Callable[[str, str, str], tuple[str, int]]

# A job's lock still held is asked for again this many times, this far apart (``_locking``).
LOCK_TRIES = 6
LOCK_RETRY_S = 0.2
# A transaction left open by a process that stopped (SIGSTOP, a lost host, a cut link) would
# hold its row locks, and every other worker's write to those rows would wait on it: the
# server ends such a session after this long (a writer never idles inside a transaction).
SESSION_OPTIONS = "-c idle_in_transaction_session_timeout=5000"


class PostgresJournal(ItemMarks, PgReads):
    """``async with PostgresJournal(url) as journal:`` (see ``Journal`` for the methods).

    ``create=False`` opens only a database that already holds a journal (``status``,
    ``report``). ``wait_s``: how long a read or write waits for a database that went away
    before it fails (0: at once); at open, an unreachable database fails at once.
    """

    def __init__(
        self,
        url: str,
        *,
        create: bool = True,
        clock: Callable[[], float] = time.time,
        wait_s: float = WAIT_S,
        emit: Emitter | None = None,
        pool_size: int = 4,
    ):
        self.url = url
        self.where = safe_url(url)
        self._create = create
        self._clock = clock
        self._wait_s = wait_s
        self._emit = emit or Emitter()
        self._pool_size = pool_size
        self._writer: PgWriter | None = None
        self._pool: AsyncConnectionPool[Conn] | None = None
        # Runs this journal opened -> their job; jobs whose lock this process holds; runs lost.
        self._locks = JobLocks()
        # Runs this process works on by lanes -> the guard of each write: the (owner, fence)
        # under which this process holds the item's lane, or LaneLostError.
        self._lanes: dict[str, LaneGuard] = {}

    # -- lifetime -----------------------------------------------------------------------------

    async def open(self) -> None:
        if self._writer is not None:
            return
        try:
            conn = await self._connect()
        except psycopg.OperationalError as exc:
            raise JournalError(
                f"journal {self.where}: can't connect ({one_line(exc)}); check that the "
                "server is running and that [runner] journal names it, then run the same "
                "command again"
            ) from None
        try:
            if not await ensure_schema(conn, create=self._create, where=self.where):
                raise NoJournalError(self.where)
        except psycopg.Error as exc:
            await conn.close()
            raise self._explain(exc) from None
        except BaseException:
            await conn.close()
            raise
        writer = PgWriter(self._connect, where=self.where, wait_s=self._wait_s,
                          reconnected=self._locks.relock,
                          held=lambda run_id: run_id in self._lanes or self._locks.holds(run_id),
                          translate=self._explain, emit=self._emit)
        await writer.start(conn)
        self._writer = writer
        self._pool = AsyncConnectionPool(
            self.url, min_size=1, max_size=self._pool_size, open=False, name="journal-readers",
            kwargs={"application_name": "forge-runner journal", "options": SESSION_OPTIONS},
            reconnect_timeout=max(self._wait_s, 1.0), timeout=max(self._wait_s, 1.0),
        )
        await self._pool.open(wait=False)

    async def close(self) -> None:
        writer, pool = self._writer, self._pool
        self._writer = self._pool = None
        if writer is not None:
            if self._locks.runs:
                # Should this fail, the locks end with the connection anyway.
                with contextlib.suppress(JournalError):
                    await writer.call(self._locks.release_all)
            await writer.stop()
        if pool is not None:
            await pool.close()
        self._locks.runs.clear()

    async def _connect(self) -> Conn:
        try:
            return await psycopg.AsyncConnection.connect(
                self.url, autocommit=True, connect_timeout=10,
                application_name="forge-runner journal", options=SESSION_OPTIONS,
                # A server that vanished without closing the connection is noticed in ~30 s.
                keepalives=1, keepalives_idle=10, keepalives_interval=5, keepalives_count=4,
            )
        except psycopg.OperationalError:
            raise
        except psycopg.Error as exc:  # e.g. a malformed URL
            raise self._explain(exc) from None

    def _explain(self, exc: Exception) -> Exception:
        if not isinstance(exc, psycopg.Error):
            return exc
        return JournalError(f"journal {self.where}: {one_line(exc)}; fix it, then run the same "
                            "command again to resume (what was journaled is safe)")

    def _w(self) -> PgWriter:
        if self._writer is None:
            raise JournalError("the journal is not open (use `async with PostgresJournal(...)`)")
        return self._writer

    # -- lanes (``runner.cluster``) -------------------------------------------------------------

    def join(self, run_id: str, guard: LaneGuard) -> None:
        """Work on ``run_id`` by lanes: each of its items' writes is accepted only while
        ``guard(run_id, site, account_id)``'s (owner, fence) holds the item's lane."""
        self._lanes[run_id] = guard

    def leave(self, run_id: str) -> None:
        self._lanes.pop(run_id, None)

    async def write(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """``fn`` in the writer's next batch: after every write queued before it."""
        result: T = await self._w().call(fn)
        return result

    async def connect(self) -> Conn:
        """A connection of the caller's own (autocommit), e.g. for a heartbeat that must not
        queue behind the pool."""
        return await self._connect()

    async def let_go(self, run_id: str) -> None:
        """Release the run's job lock and leave its state as it is (workers go on with it)."""
        async def op(conn: Conn) -> None:
            ident = self._locks.runs.pop(run_id, None)
            if ident is not None and ident not in self._locks.runs.values():
                await self._locks.release(conn, ident)

        await self._w().call(op)

    @property
    def batches(self) -> tuple[int, int]:
        """The writer's (commits, writes) so far."""
        if self._writer is None:
            return (0, 0)
        return (self._writer.batches, self._writer.operations)

    # -- runs ---------------------------------------------------------------------------------

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

        async def op(conn: Conn) -> RunHandle:
            if not await self._locks.take(conn, ident):
                raise await self._locks.refusal(conn, ident)
            try:
                latest = await q.latest_run(conn, ident)
                if latest is not None and resumes(
                    latest, job_path=ident, job_fingerprint=job_fingerprint, job_text=job_text,
                    fresh=fresh,
                ):
                    await q.set_running(conn, latest.run_id, this_holder(), config_fingerprint)
                    changed = latest.config_fingerprint != config_fingerprint
                    extends = latest if latest.state is RunState.FINISHED else None
                    handle = RunHandle(await self._run(conn, latest.run_id), True, changed,
                                       extends)
                else:
                    run = await q.insert_new_run(conn, job_name, ident, job_fingerprint,
                                                config_fingerprint, job_text, self._clock())
                    handle = RunHandle(run, False)
            except BaseException:
                await self._locks.release(conn, ident)
                raise
            self._locks.runs[handle.run_id] = ident
            return handle

        return await self._locking(op)

    async def _locking(self, op: Callable[[Conn], Awaitable[RunHandle]]) -> RunHandle:
        """``op`` (which takes the job's lock), tried again for a moment while the lock is
        held: a holder that was just killed keeps its lock until the server has seen its
        connection close, which takes a few milliseconds after the process is gone."""
        for _ in range(LOCK_TRIES - 1):
            try:
                handle: RunHandle = await self._w().call(op)
            except RunLockedError:
                await _pause(LOCK_RETRY_S)
                continue
            return handle
        handle = await self._w().call(op)
        return handle

    async def resume(self, run_id: str) -> RunHandle:
        job = (await self.get_run(run_id)).job_path

        async def op(conn: Conn) -> RunHandle:
            if not await self._locks.take(conn, job):
                raise await self._locks.refusal(conn, job)
            try:
                run = await self._run(conn, run_id)
                await q.set_running(conn, run_id, this_holder(), run.config_fingerprint)
                handle = RunHandle(await self._run(conn, run_id), True)
            except BaseException:
                await self._locks.release(conn, job)
                raise
            self._locks.runs[run_id] = job
            return handle

        return await self._locking(op)

    async def claim(self, run_id: str, row_keys: Sequence[str]) -> Sequence[str]:
        # The job lock makes this process the run's only worker: every row is ours.
        self._locks.check(run_id)
        return list(row_keys)

    async def set_total(self, run_id: str, total_items: int) -> None:
        self._locks.check(run_id)
        total = int(total_items)
        await self._w().call(lambda conn: q.set_total(conn, run_id, total))

    async def finish_run(self, run_id: str, state: RunState | str) -> None:
        final = RunState(state)
        self._locks.check(run_id)

        async def op(conn: Conn) -> None:
            await q.set_ended(conn, run_id, final, self._clock())
            ident = self._locks.runs.pop(run_id, None)
            # Unlocked before the batch commits, yet safe: the next holder reads the run
            # inside its own batch, which sees this one's commit or waits for its row locks.
            if ident is not None and ident not in self._locks.runs.values():
                await self._locks.release(conn, ident)

        await self._w().call(op)

    async def requeue(self, run_id: str, states: Sequence[str] = (ItemState.FAILED,)) -> int:
        wanted = requeueable(states)

        async def op(conn: Conn) -> int:
            run = await self._run(conn, run_id)
            # Not while another process runs the job: its workers would race the change.
            borrowed = run_id not in self._locks.runs
            if borrowed and not await self._locks.take(conn, run.job_path):
                raise await self._locks.refusal(conn, run.job_path)
            try:
                moved = await q.requeue(conn, run, wanted, self._clock())
                await lanes.reopen_requeued(conn, run_id)
                return moved
            finally:
                if borrowed:
                    await self._locks.release(conn, run.job_path)

        moved: int = await self._w().call(op)
        return moved

    # -- items --------------------------------------------------------------------------------

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
        guard = self._lanes.get(run_id)
        if guard is None:
            self._locks.check(run_id)
        mark = Mark.of(run_id, item, state, clean_text(reason, MAX_REASON_CHARS),
                       clean_text(detail, MAX_DETAIL_CHARS), result, self._clock())
        if guard is None:
            return self._w().submit_mark(mark)
        return self._w().submit_mark(mark, guard(run_id, item.site, item.account_id))

async def _pause(seconds: float) -> None:
    await asyncio.sleep(seconds)  # waiting for a server to come back: nothing signals it

