"""The PostgreSQL journal's writer: one connection, every write in order, group commit.

Like SQLite's writer thread (``dbthread.py``), a task takes every write waiting in its queue,
applies them in one short transaction (the item marks among them as one statement) and answers
each only after COMMIT, so a batch costs one round trip and one WAL flush however many items it
holds, and a write queued after another is never durable before it (``submit_done`` relies on
it). No transaction stays open between batches, nor across anything but the database.

The connection is the one that holds the run's job locks (session advisory locks): a write can
only reach the database on a session that holds them, and after a reconnect the locks are
taken again (``reconnected``) before any write is retried.

When the database goes away (a restart, a dropped connection) the batch is not dropped: the
writer says so (``JournalWaiting``), reconnects with a growing pause, and applies the same
batch again, until the server is back or ``wait_s`` has passed; only then do the awaiters get
an error. An item's ``started`` is therefore durable before its request leaves, or the request
does not leave. A commit whose answer was lost may be applied twice: a ``started`` then counts
one attempt more, which no state depends on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from runner.errors import JournalError, RunnerError
from runner.events import Emitter, JournalReconnected, JournalWaiting
from runner.journal.outage import Outage
from runner.journal.pgqueries import Conn, mark_items, mark_items_fenced
from runner.journal.queries import Mark, distinct_chunks

Op = Callable[[Conn], Awaitable[Any]]

# Pauses between reconnection attempts: short first (a restart takes about 2.5 s), capped.


@dataclass
class _Job:
    future: asyncio.Future[Any]
    mark: Mark | None = None
    op: Op | None = None
    # (owner, fence) of a lane's mark: written only while that owner holds the lane under it.
    guard: tuple[str, int] | None = None


class PgWriter:
    """``connect()`` opens the connection; ``reconnected(conn)`` re-takes what the session
    held; ``held(run_id)`` says whether this process still holds a run (a mark of a run it
    lost is refused, never written)."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[Conn]],
        *,
        where: str,
        wait_s: float,
        reconnected: Callable[[Conn], Awaitable[None]],
        held: Callable[[str], bool],
        translate: Callable[[Exception], Exception],
        emit: Emitter,
        max_batch: int = 4096,
    ):
        self._connect = connect
        self._where = where
        self._wait_s = wait_s
        self._reconnected = reconnected
        self._held = held
        self._translate = translate
        self._emit = emit
        self._max_batch = max_batch
        self._queue: asyncio.Queue[_Job | None] = asyncio.Queue()
        self._conn: Conn | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.batches = 0
        self.operations = 0

    async def start(self, conn: Conn) -> None:
        self._conn = conn
        self._task = asyncio.create_task(self._main(), name="journal-writer")

    def submit_mark(self, mark: Mark,
                    guard: tuple[str, int] | None = None) -> asyncio.Future[None]:
        return self._put(_Job(self._future(), mark=mark, guard=guard))

    async def call(self, op: Op) -> Any:
        """Run ``op(conn)`` in the writer's next batch, under its own savepoint; its result once
        the batch has committed."""
        return await self._put(_Job(self._future(), op=op))

    def _future(self) -> asyncio.Future[Any]:
        return asyncio.get_running_loop().create_future()

    def _put(self, job: _Job) -> asyncio.Future[Any]:
        if self._closed:
            raise JournalError("the journal is closed")
        self._queue.put_nowait(job)
        return job.future

    async def stop(self) -> None:
        """Finish what is queued, then close the connection."""
        if self._closed:
            return
        self._closed = True
        self._queue.put_nowait(None)
        if self._task is not None:
            await self._task
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    # -- the task ---------------------------------------------------------------------------

    async def _main(self) -> None:
        while True:
            first = await self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < self._max_batch and not self._queue.empty():
                nxt = self._queue.get_nowait()
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            try:
                outcomes = await self._durably(batch)
            except Exception as exc:  # a bug: every awaiter hears of it, the writer goes on
                outcomes = [(False, exc) for _ in batch]
            self.batches += 1
            self.operations += len(batch)
            for job, (ok, value) in zip(batch, outcomes, strict=True):
                if job.future.done():  # its awaiter was cancelled; the write stands regardless
                    continue
                if ok:
                    job.future.set_result(value)
                else:
                    job.future.set_exception(value)
            if stop:
                return

    async def _durably(self, batch: list[_Job]) -> list[tuple[bool, Any]]:
        """Apply ``batch``, waiting out a database that went away."""
        outage = Outage(self._wait_s)
        while True:
            try:
                if self._conn is None:
                    self._conn = await self._connect()
                    await self._reconnected(self._conn)
                outcomes = await self._apply(self._conn, batch)
                break
            except psycopg.OperationalError as exc:
                # The server went away (or the session broke): reconnect, apply the batch again.
                await self._drop()
                if outage.failed():
                    self._emit(JournalWaiting(journal=self._where, reason=_first_line(exc),
                                              wait_s=self._wait_s))
                if outage.over:
                    error = JournalError(
                        f"journal {self._where}: the database has been unreachable for "
                        f"{outage.waited_s:.0f}s ({_first_line(exc)}); start it, then run "
                        "the same command again to resume (what was journaled is safe)"
                    )
                    return [(False, _copy(error)) for _ in batch]
                await outage.pause()
            except Exception as exc:
                failure: Exception
                if isinstance(exc, RunnerError):
                    failure = exc
                elif isinstance(exc, psycopg.Error):
                    failure = self._translate(exc)
                else:
                    raise  # a bug
                if len(batch) == 1:
                    return [(False, failure)]
                # Nothing of the batch was applied: each alone, so only the culprit fails.
                return [(await self._durably([job]))[0] for job in batch]
        if outage.since is not None:
            self._emit(JournalReconnected(journal=self._where,
                                          waited_s=round(outage.waited_s, 1)))
        return outcomes

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def _apply(self, conn: Conn, batch: list[_Job]) -> list[tuple[bool, Any]]:
        marks = [job.mark for job in batch if job.mark is not None]
        guarded = {job.guard is not None for job in batch}
        if (len(marks) == len(batch) and len(guarded) == 1
                and len(distinct_chunks(marks, cap=None)) == 1):
            # Item marks only, one statement: its own transaction (the connection autocommits),
            # one round trip instead of BEGIN, the statement and COMMIT.
            return await self._run_marks(conn, batch)
        outcomes: list[tuple[bool, Any]] = []
        async with conn.transaction():
            start = 0
            while start < len(batch):
                job = batch[start]
                if job.op is not None:
                    outcomes.append(await self._run_op(conn, job.op))
                    start += 1
                    continue
                end = start + 1
                while end < len(batch) and batch[end].mark is not None:
                    end += 1
                outcomes += await self._run_marks(conn, batch[start:end])
                start = end
        return outcomes

    async def _run_op(self, conn: Conn, op: Op) -> tuple[bool, Any]:
        try:
            async with conn.transaction():  # a savepoint: a refused op undoes only itself
                return True, await op(conn)
        except psycopg.OperationalError:
            raise
        except RunnerError as exc:
            return False, exc
        except psycopg.Error as exc:
            return False, self._translate(exc)

    async def _run_marks(self, conn: Conn, jobs: list[_Job]) -> list[tuple[bool, Any]]:
        if any(job.guard is not None for job in jobs):
            lanes = [job for job in jobs if job.guard is not None]
            plain = [job for job in jobs if job.guard is None]
            done = dict(zip(map(id, plain), await self._run_marks(conn, plain) if plain else [],
                            strict=True))
            fenced = await mark_items_fenced(conn, [j.mark for j in lanes if j.mark],
                                             [j.guard for j in lanes if j.guard])
            done.update(zip(map(id, lanes), ((why is None, why) for why in fenced),
                            strict=True))
            return [done[id(job)] for job in jobs]
        marks = [job.mark for job in jobs if job.mark is not None]
        # A run this process lost (another took its lock while the database was away) gets
        # nothing written: its new owner decides.
        kept = [m for m in marks if self._held(m.run_id)]
        refused = dict(zip(map(id, kept), await mark_items(conn, kept) if kept else [],
                           strict=True))
        out: list[tuple[bool, Any]] = []
        for mark in marks:
            if id(mark) not in refused:
                out.append((False, JournalError(
                    f"run {mark.run_id}: this process no longer holds its job (another took it "
                    "over while the journal's database was unreachable); nothing more is sent")))
                continue
            why = refused[id(mark)]
            out.append((True, None) if why is None else (False, why))
        return out


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())[:300]


def _copy(error: JournalError) -> JournalError:
    return JournalError(*error.args)
