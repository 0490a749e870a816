"""The journal on PostgreSQL: the same interface and rules as ``SqliteJournal``, for a journal
that several processes, on one host or several, share.

Writes go through one writer connection with group commit (``pgwriter.py``); reads go through
a small pool (``psycopg_pool``), one short statement or two per call, never a transaction held
open across anything else.

The job lock is a session advisory lock held by the writer's connection, with a ``locks`` row
beside it saying who holds it. Why not a lease row renewed by heartbeat: a process that dies
(SIGKILL, OOM, a lost host) closes its connection and PostgreSQL ends the session and its locks
at once, so the job can be resumed the moment its holder is gone, with no lease to wait out and
no clock to trust; a lease would keep a killed run's job locked for a whole term. The danger of
session locks, a connection that drops while the process goes on, is closed by putting the lock
on the connection that writes: no write can reach the database on a session without the lock,
and after a reconnect the writer takes every lock again before it retries anything; a lock it
can't take again (another process took the job meanwhile) stops that run's writes for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from runner.errors import JournalError, NoJournalError, RunLockedError, RunNotFoundError
from runner.events import Emitter, JournalReconnected, JournalWaiting
from runner.journal import pgqueries as q
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
from runner.journal.marks import ItemMarks
from runner.journal.pgschema import JOB_LOCK_CLASS, ensure_schema
from runner.journal.pgwriter import RETRY_FIRST_S, RETRY_MAX_S, PgWriter
from runner.journal.queries import Mark
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

T = TypeVar("T")
Conn = q.Conn

PAGE_SIZE = 500
# How long a read or write waits for a database that went away mid-run, by default.
WAIT_S = 600.0


def is_postgres_url(target: object) -> bool:
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


def safe_url(url: str) -> str:
    """``url`` without its password (in the user part or as a ``password=`` parameter)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        netloc = userinfo.split(":", 1)[0] + "@" + host
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k != "password"])
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def lock_key(ident: str) -> int:
    """The job's advisory lock key (the second of the two-key form: a signed 32-bit int)."""
    return int.from_bytes(hashlib.sha256(ident.encode()).digest()[:4], "big", signed=True)


class PostgresJournal(ItemMarks):
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
        self._held: dict[str, str] = {}
        self._lost: set[str] = set()
        self._owner = uuid.uuid4().hex

    # -- lifetime -----------------------------------------------------------------------------

    async def open(self) -> None:
        if self._writer is not None:
            return
        try:
            conn = await self._connect()
        except psycopg.OperationalError as exc:
            raise JournalError(
                f"journal {self.where}: can't connect ({_one_line(exc)}); check that the "
                "server is running and that [runner] journal names it, then run the same "
                "command again"
            ) from None
        try:
            if not await ensure_schema(conn, create=self._create):
                raise NoJournalError(self.where)
        except psycopg.Error as exc:
            await conn.close()
            raise self._explain(exc) from None
        except BaseException:
            await conn.close()
            raise
        writer = PgWriter(self._connect, where=self.where, wait_s=self._wait_s,
                          reconnected=self._relock, held=self._holds, translate=self._explain,
                          emit=self._emit)
        await writer.start(conn)
        self._writer = writer
        self._pool = AsyncConnectionPool(
            self.url, min_size=1, max_size=self._pool_size, open=False, name="journal-readers",
            check=AsyncConnectionPool.check_connection,
            kwargs={"application_name": "forge-runner journal"},
            reconnect_timeout=max(self._wait_s, 1.0), timeout=max(self._wait_s, 1.0),
        )
        await self._pool.open(wait=False)

    async def close(self) -> None:
        writer, pool = self._writer, self._pool
        self._writer = self._pool = None
        if writer is not None:
            if self._held:
                # Should this fail, the locks end with the connection anyway.
                with contextlib.suppress(JournalError):
                    await writer.call(self._release_all)
            await writer.stop()
        if pool is not None:
            await pool.close()
        self._held.clear()

    async def _connect(self) -> Conn:
        try:
            return await psycopg.AsyncConnection.connect(
                self.url, autocommit=True, connect_timeout=10,
                application_name="forge-runner journal",
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
        return JournalError(f"journal {self.where}: {_one_line(exc)}; fix it, then run the same "
                            "command again to resume (what was journaled is safe)")

    def _w(self) -> PgWriter:
        if self._writer is None:
            raise JournalError("the journal is not open (use `async with PostgresJournal(...)`)")
        return self._writer

    async def _read(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """``fn`` on a pooled connection; a database that went away is waited for."""
        if self._pool is None:
            raise JournalError("the journal is not open (use `async with PostgresJournal(...)`)")
        pool = self._pool
        since: float | None = None
        pause = RETRY_FIRST_S
        while True:
            try:
                async with pool.connection() as conn:
                    value = await fn(conn)
                break
            except (psycopg.OperationalError, PoolTimeout) as exc:
                now = time.monotonic()
                if since is None:
                    since = now
                    self._emit(JournalWaiting(journal=self.where, reason=_one_line(exc),
                                              wait_s=self._wait_s))
                if now - since >= self._wait_s:
                    raise JournalError(
                        f"journal {self.where}: can't be reached ({_one_line(exc)}); start the "
                        "database, then run the same command again to resume"
                    ) from None
                await _pause(pause)
                pause = min(pause * 2, RETRY_MAX_S)
            except psycopg.Error as exc:
                raise self._explain(exc) from None
        if since is not None:
            self._emit(JournalReconnected(journal=self.where,
                                          waited_s=round(time.monotonic() - since, 1)))
        return value

    @property
    def batches(self) -> tuple[int, int]:
        """The writer's (commits, writes) so far."""
        if self._writer is None:
            return (0, 0)
        return (self._writer.batches, self._writer.operations)

    # -- the job lock (on the writer's connection) -------------------------------------------

    async def _try_lock(self, conn: Conn, ident: str) -> bool:
        if ident in self._held.values():
            return False  # another run of this process holds it (the session's lock would let
            # it in twice)
        cur = await conn.execute("SELECT pg_try_advisory_lock(%s, %s)",
                                 (JOB_LOCK_CLASS, lock_key(ident)))
        row = await cur.fetchone()
        if not (row and row[0]):
            return False
        await conn.execute(
            "INSERT INTO locks (job_path, holder, owner) VALUES (%s, %s, %s) "
            "ON CONFLICT (job_path) DO UPDATE SET holder = excluded.holder, "
            "owner = excluded.owner, taken_at = now()",
            (ident, this_holder(), self._owner),
        )
        return True

    async def _unlock(self, conn: Conn, ident: str) -> None:
        await conn.execute("DELETE FROM locks WHERE job_path = %s AND owner = %s",
                           (ident, self._owner))
        await conn.execute("SELECT pg_advisory_unlock(%s, %s)", (JOB_LOCK_CLASS, lock_key(ident)))

    async def _locked(self, conn: Conn, ident: str) -> RunLockedError:
        latest = await q.latest_run(conn, ident)
        cur = await conn.execute("SELECT holder FROM locks WHERE job_path = %s", (ident,))
        row = await cur.fetchone()
        run_id = latest.run_id if latest is not None else f"of {ident}"
        return RunLockedError(run_id, str(row[0]) if row else "another process")

    async def _relock(self, conn: Conn) -> None:
        """After a reconnect: take every held job's lock again; a run whose lock another
        process took meanwhile is lost (its writes are refused from now on)."""
        for run_id, ident in list(self._held.items()):
            if run_id in self._lost:
                continue
            cur = await conn.execute("SELECT pg_try_advisory_lock(%s, %s)",
                                     (JOB_LOCK_CLASS, lock_key(ident)))
            row = await cur.fetchone()
            if not (row and row[0]):
                self._lost.add(run_id)

    def _holds(self, run_id: str) -> bool:
        return run_id in self._held and run_id not in self._lost

    async def _release_all(self, conn: Conn) -> None:
        for ident in set(self._held.values()):
            await self._unlock(conn, ident)
        self._held.clear()

    def _check_held(self, run_id: str) -> None:
        if run_id not in self._held:
            raise JournalError(f"run {run_id} is not open in this journal (open_run or resume)")
        if run_id in self._lost:
            raise JournalError(f"run {run_id}: this process no longer holds its job (another "
                               "took it over while the journal's database was unreachable)")

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
            if not await self._try_lock(conn, ident):
                raise await self._locked(conn, ident)
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
                    run = await self._insert_run(conn, job_name, ident, job_fingerprint,
                                                 config_fingerprint, job_text)
                    handle = RunHandle(run, False)
            except BaseException:
                await self._unlock(conn, ident)
                raise
            self._held[handle.run_id] = ident
            return handle

        handle: RunHandle = await self._w().call(op)
        return handle

    async def resume(self, run_id: str) -> RunHandle:
        job = (await self.get_run(run_id)).job_path

        async def op(conn: Conn) -> RunHandle:
            if not await self._try_lock(conn, job):
                raise await self._locked(conn, job)
            try:
                run = await self._run(conn, run_id)
                await q.set_running(conn, run_id, this_holder(), run.config_fingerprint)
                handle = RunHandle(await self._run(conn, run_id), True)
            except BaseException:
                await self._unlock(conn, job)
                raise
            self._held[run_id] = job
            return handle

        handle: RunHandle = await self._w().call(op)
        return handle

    async def claim(self, run_id: str, row_keys: Sequence[str]) -> Sequence[str]:
        # The job lock makes this process the run's only worker: every row is ours.
        self._check_held(run_id)
        return list(row_keys)

    async def set_total(self, run_id: str, total_items: int) -> None:
        self._check_held(run_id)
        total = int(total_items)
        await self._w().call(lambda conn: q.set_total(conn, run_id, total))

    async def finish_run(self, run_id: str, state: RunState | str) -> None:
        final = RunState(state)
        self._check_held(run_id)

        async def op(conn: Conn) -> None:
            await q.set_ended(conn, run_id, final, self._clock())
            ident = self._held.pop(run_id, None)
            # Unlocked before the batch commits, yet safe: the next holder reads the run
            # inside its own batch, which sees this one's commit or waits for its row locks.
            if ident is not None and ident not in self._held.values():
                await self._unlock(conn, ident)

        await self._w().call(op)

    async def requeue(self, run_id: str, states: Sequence[str] = (ItemState.FAILED,)) -> int:
        wanted = requeueable(states)

        async def op(conn: Conn) -> int:
            run = await self._run(conn, run_id)
            # Not while another process runs the job: its workers would race the change.
            borrowed = run_id not in self._held
            if borrowed and not await self._try_lock(conn, run.job_path):
                raise await self._locked(conn, run.job_path)
            try:
                return await q.requeue(conn, run, wanted, self._clock())
            finally:
                if borrowed:
                    await self._unlock(conn, run.job_path)

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
        self._check_held(run_id)
        mark = Mark.of(run_id, item, state, clean_text(reason, MAX_REASON_CHARS),
                       clean_text(detail, MAX_DETAIL_CHARS), result, self._clock())
        return self._w().submit_mark(mark)

    # -- reads --------------------------------------------------------------------------------

    async def states(self, run_id: str, row_keys: Sequence[str]) -> Mapping[str, ItemRecord]:
        keys = list(dict.fromkeys(row_keys))
        return await self._read(lambda conn: q.item_states(conn, run_id, keys))

    async def records(
        self, run_id: str, states: Sequence[str] = PROBLEM_STATES
    ) -> AsyncIterator[ItemRecord]:
        for state in parse_states(states):
            after: tuple[str, int] = ("", -1)
            while True:
                page = await self._read(
                    lambda conn, a=after, s=state: q.item_page(conn, run_id, s, a, PAGE_SIZE)  # type: ignore[misc]
                )
                for record in page:
                    yield record
                if len(page) < PAGE_SIZE:
                    break
                after = (page[-1].row_key, page[-1].action_index)

    async def get_run(self, run_id: str) -> RunRecord:
        return await self._read(lambda conn: self._run(conn, run_id))

    async def latest_run(self, job_path: str) -> RunRecord | None:
        ident = job_identity(job_path)
        return await self._read(lambda conn: q.latest_run(conn, ident))

    async def done_by_action(self, run_id: str) -> Mapping[int, int]:
        return await self._read(lambda conn: q.done_by_action(conn, run_id))

    async def runs(self, limit: int = 20) -> Sequence[RunRecord]:
        return await self._read(lambda conn: q.latest_runs(conn, limit))

    async def counts(self, run_id: str) -> RunCounts:
        async def read(conn: Conn) -> RunCounts:
            return await q.run_counts(conn, await self._run(conn, run_id))

        return await self._read(read)

    # -- helpers ------------------------------------------------------------------------------

    async def _run(self, conn: Conn, run_id: str) -> RunRecord:
        run = await q.get_run(conn, run_id)
        if run is None:
            raise RunNotFoundError(run_id, self.where)
        return run

    async def _insert_run(self, conn: Conn, job_name: str, ident: str, job_fp: str,
                          config_fp: str, job_text: str) -> RunRecord:
        now = self._clock()
        for _ in range(10):
            run = RunRecord(
                run_id=new_run_id(now), job_name=job_name, job_path=ident,
                job_fingerprint=job_fp, config_fingerprint=config_fp, job_text=job_text,
                started_at=now, ended_at=None, state=RunState.RUNNING, total_items=None,
                holder=this_holder(),
            )
            if await q.insert_run(conn, run):
                return run
        raise JournalError("could not find a free run ID")  # 16M IDs a day: never in practice


async def _pause(seconds: float) -> None:
    await asyncio.sleep(seconds)  # waiting for a server to come back: nothing signals it


def _one_line(exc: BaseException) -> str:
    """psycopg's message on one line (libpq's spans several), cut short."""
    return (" ".join(str(exc).split()) or type(exc).__name__)[:300]
