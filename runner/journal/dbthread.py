"""A thread that owns one SQLite connection and runs operations for the event loop, in batches.

Group commit: the thread takes every operation waiting in its queue, runs them in one
transaction (each under its own savepoint, so one failing operation fails alone), commits once,
and only then wakes each operation's awaiter. Under load a batch holds as many operations as
arrived during the previous commit, so the cost of a durable commit (an fsync) is shared by
every item in flight instead of paid by each. The event loop never blocks on the database.

Grouped operations (``submit_grouped``) that are adjacent in a batch run in one call, e.g. one
multi-row statement: the thread gives up the GIL around every statement, and each time it takes
it back from a busy event loop costs both threads a switch, so fewer statements per batch keep
the loop responsive.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from runner.errors import JournalError, RunnerError

T = TypeVar("T")

Operation = Callable[[sqlite3.Connection], Any]
# Runs many arguments at once; returns, for each, None or the exception that refused it. It
# must apply all of them or none when it raises (one statement, or its own savepoint).
Grouped = Callable[[sqlite3.Connection, Sequence[Any]], Sequence[Exception | None]]


@dataclass
class _Job:
    op: Operation | None
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    atomic: bool
    group: Grouped | None = None
    arg: Any = None



class DbThread:
    """Runs operations on its own connection. ``connect`` is called in the thread."""

    def __init__(
        self,
        name: str,
        connect: Callable[[], sqlite3.Connection],
        *,
        begin: str = "BEGIN",
        max_batch: int = 1024,
        translate: Callable[[Exception], Exception] | None = None,
    ):
        self._connect = connect
        # What an awaiter gets for a database failure: by default a JournalError with
        # SQLite's words; the journal passes one naming its file and what to do.
        self._translate = translate or _as_journal_error
        self._begin = begin
        self._max_batch = max_batch
        # None asks the thread to stop once what is queued before it is done.
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()
        # Batches committed, and operations they held (for tests and benchmarks).
        self.batches = 0
        self.operations = 0

    @property
    def pending(self) -> int:
        """Operations queued and not yet taken into a batch (approximate while it runs)."""
        return self._queue.qsize()

    async def call(self, op: Callable[[sqlite3.Connection], T], *, single: bool = False) -> T:
        """Run ``op(connection)`` in the thread; return once its batch has committed.

        An operation runs under a savepoint, so if it raises, its writes are undone and the
        rest of the batch commits. ``single=True`` skips the savepoint for an operation that
        writes with one statement (a failed statement undoes itself), which is most writes.
        """
        return await self.submit(op, single=single)

    def submit(
        self, op: Callable[[sqlite3.Connection], T], *, single: bool = False
    ) -> asyncio.Future[T]:
        """Queue ``op`` now and return its future, settled once its batch has committed.

        Operations run, and their batches commit, in the order they were queued: an operation
        queued after this one is never durable before it.
        """
        return self._put(op, not single)

    def submit_grouped(self, group: Grouped, arg: Any) -> asyncio.Future[None]:
        """Queue ``arg`` for ``group``, in order with every other operation: the grouped jobs
        adjacent in a batch run in one call of ``group``, each settled with its own outcome."""
        return self._put(None, False, group, arg)

    def _put(
        self, op: Operation | None, atomic: bool, group: Grouped | None = None, arg: Any = None
    ) -> asyncio.Future[Any]:
        if self._closed:
            raise JournalError("the journal is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.put(_Job(op, loop, future, atomic, group, arg))
        return future

    async def stop(self) -> None:
        """Finish what is queued, close the connection, end the thread."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        await asyncio.to_thread(self._thread.join)

    # -- in the thread ----------------------------------------------------------------------

    def _main(self) -> None:
        try:
            while True:
                first = self._queue.get()
                if first is None:
                    return
                batch = [first]
                stop = False
                while len(batch) < self._max_batch:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        stop = True
                        break
                    batch.append(nxt)
                self._run_batch(batch)
                if stop:
                    return
        finally:
            if self._conn is not None:
                self._conn.close()

    def _run_batch(self, batch: list[_Job]) -> None:
        outcomes: list[tuple[bool, Any]] = []
        try:
            if self._conn is None:
                self._conn = self._connect()
            conn = self._conn
            conn.execute(self._begin)
            start = 0
            while start < len(batch):
                job = batch[start]
                if job.group is None:
                    assert job.op is not None
                    outcomes.append(self._run_one(conn, job.op, job.atomic))
                    start += 1
                    continue
                end = start + 1
                while end < len(batch) and batch[end].group is job.group:
                    end += 1
                outcomes += self._run_group(conn, job.group, [j.arg for j in batch[start:end]])
                start = end
            conn.execute("COMMIT")
        except Exception as exc:  # the batch as a whole failed: nothing of it is durable
            if self._conn is not None and self._conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
            # One exception object per awaiter: each raise writes its own traceback into it.
            error = self._translate(exc)
            if not isinstance(error, RunnerError):
                error = JournalError(str(error))
            outcomes = [(False, _copy(error)) for _ in batch]
        self.batches += 1
        self.operations += len(batch)
        # One wake-up per event loop for the whole batch, not one per operation: each
        # call_soon_threadsafe writes to the loop's self-pipe.
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
        for job, (ok, value) in zip(batch, outcomes, strict=True):
            by_loop.setdefault(job.loop, []).append((job.future, ok, value))
        for loop, settled in by_loop.items():
            # RuntimeError: the awaiters' loop is closed, so nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle_all, settled)

    def _run_one(self, conn: sqlite3.Connection, op: Operation, atomic: bool) -> tuple[bool, Any]:
        if not atomic:
            try:
                return True, op(conn)
            except Exception as exc:
                return False, self._translate(exc)
        conn.execute("SAVEPOINT op")
        try:
            value = op(conn)
        except Exception as exc:
            conn.execute("ROLLBACK TO op")
            conn.execute("RELEASE op")
            return False, self._translate(exc)
        conn.execute("RELEASE op")
        return True, value


    def _run_group(
        self, conn: sqlite3.Connection, group: Grouped, args: list[Any]
    ) -> list[tuple[bool, Any]]:
        try:
            refused = group(conn, args)
        except Exception as exc:
            if len(args) == 1:
                return [(False, self._translate(exc))]
            # Nothing of the call was applied: run each alone, so only the culprit fails.
            return [self._run_group(conn, group, [arg])[0] for arg in args]
        return [(True, None) if why is None else (False, why) for why in refused]


def _as_journal_error(exc: Exception) -> Exception:
    if isinstance(exc, RunnerError):
        return exc
    if isinstance(exc, sqlite3.Error):
        return JournalError(f"journal database: {exc}")
    return exc


def _copy(error: Exception) -> Exception:
    """A new exception of the same class, message and fields (``copy.copy`` would call an
    ``__init__`` whose arguments are not ``args``)."""
    twin = type(error).__new__(type(error))
    twin.args = error.args
    twin.__dict__.update(error.__dict__)
    return twin


def _settle_all(settled: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, ok, value in settled:
        # A cancelled awaiter leaves its future done; the write itself has committed regardless.
        if future.done():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
