"""Item marks committed by a child process, so durable commits never contend for the GIL.

A run journals two marks per item, and each ``started`` is awaited before its request leaves.
Committed by a thread of the runner's own process, every commit makes that thread take the GIL
back from a busy event loop several times (after each statement and each fsync), and each time
costs both threads a switch: at 16 workers over loopback the journal then cost a third of the
throughput. A child process has its own interpreter: the event loop only pickles the marks and
writes them down a pipe, and reads back one answer per transaction.

    event loop ──frames of marks──> committer process (BEGIN; one upsert; COMMIT, fsync)
               <──one answer per transaction: None or the refusal, per mark, in order──

Marks are applied in the order they were submitted, and a transaction's answer comes only after
its COMMIT, so a mark answered means every mark before it is durable too. The child ignores
SIGINT and SIGTERM (the runner drains and still journals) and ends when its input closes: on
``stop()``, once every mark was answered, or when the runner dies, dropping marks it had read
but not begun to commit (their requests were never sent: they waited for the answer). It holds
the run's job lock with the runner (``start(hold=...)``): a transaction it had begun when the
runner died lands before another run of the job can start.
Everything else the journal writes (runs, locks, requeues) stays on the writer thread.

The child runs ``main(PATH, SYNCHRONOUS)`` of this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import select
import signal
import sqlite3
import struct
import subprocess
import sys
from collections import deque
from collections.abc import Sequence
from typing import Any

from runner.errors import JournalError
from runner.journal import queries as q

_LENGTH = struct.Struct("!I")
# Marks per transaction at most, when the child finds many waiting.
MAX_MARKS_PER_COMMIT = 4096
_READ_SIZE = 1 << 16
# Not `-m`: this module is imported by the package it would run from.
_CHILD = "import sys; from runner.journal.committer import main; sys.exit(main(sys.argv[1:]))"


class Committer:
    """The runner's side: ``await start()``, ``submit(mark)`` -> future, ``await stop()``."""

    def __init__(self, path: str, synchronous: str) -> None:
        self._args = [sys.executable, "-c", _CHILD, path, synchronous]
        self._proc: subprocess.Popen[bytes] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiting: deque[asyncio.Future[None]] = deque()  # sent, not answered, in order
        self._unsent: list[tuple[Any, ...]] = []
        self._outbox = bytearray()
        self._inbox = bytearray()
        self._flush_scheduled = False
        self._failure: str | None = None
        self._stopping = False
        # Transactions committed, and marks they held (for tests and benchmarks).
        self.batches = 0
        self.operations = 0

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    async def start(self, hold: Sequence[int] = ()) -> None:
        """Start the child; it keeps the open files ``hold`` (the run's job lock) until it
        exits, so a lock outlives a runner that died until its last commit has landed."""
        if self._proc is not None:
            return
        self._loop = asyncio.get_running_loop()
        proc = await asyncio.to_thread(
            subprocess.Popen, self._args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            pass_fds=tuple(hold),
        )
        assert proc.stdin is not None and proc.stdout is not None
        os.set_blocking(proc.stdin.fileno(), False)
        os.set_blocking(proc.stdout.fileno(), False)
        self._proc = proc
        self._loop.add_reader(proc.stdout.fileno(), self._on_readable)

    def submit(self, mark: q.Mark) -> asyncio.Future[None]:
        """Queue ``mark``; its future is settled once the transaction holding it committed."""
        if self._proc is None or self._loop is None or self._stopping:
            raise JournalError("the journal is not open for writing items")
        if self._failure is not None:
            raise JournalError(self._failure)
        future: asyncio.Future[None] = self._loop.create_future()
        self._waiting.append(future)
        self._unsent.append(tuple(mark))
        if not self._flush_scheduled:
            # Everything submitted in this turn of the loop goes down in one frame.
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)
        return future

    async def stop(self) -> None:
        """Commit what was submitted, then end the child."""
        proc, loop = self._proc, self._loop
        if proc is None or loop is None or self._stopping:
            return
        self._stopping = True
        self._flush()
        # Every mark answered means the child read them all: nothing is left to write.
        pending = [f for f in self._waiting if not f.done()]
        if pending:
            await asyncio.wait(pending)
        assert proc.stdin is not None and proc.stdout is not None
        with contextlib.suppress(OSError):
            loop.remove_writer(proc.stdin.fileno())
        proc.stdin.close()
        await asyncio.to_thread(proc.wait)
        loop.remove_reader(proc.stdout.fileno())
        proc.stdout.close()
        self._proc = None

    # -- on the event loop --------------------------------------------------------------------

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._unsent:
            payload = pickle.dumps(self._unsent, protocol=pickle.HIGHEST_PROTOCOL)
            self._unsent = []
            self._outbox += _LENGTH.pack(len(payload)) + payload
        self._write_out()

    def _write_out(self) -> None:
        proc, loop = self._proc, self._loop
        if proc is None or loop is None or proc.stdin is None or not self._outbox:
            return
        fd = proc.stdin.fileno()
        try:
            sent = os.write(fd, self._outbox)
        except BlockingIOError:
            sent = 0
        except OSError as exc:  # the child is gone
            self._fail(f"the journal's committer stopped: {exc}")
            return
        del self._outbox[:sent]
        if self._outbox:
            loop.add_writer(fd, self._write_out)
        else:
            with contextlib.suppress(OSError):
                loop.remove_writer(fd)

    def _on_readable(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        try:
            chunk = os.read(proc.stdout.fileno(), _READ_SIZE)
        except BlockingIOError:
            return
        if not chunk:
            if self._loop is not None:
                self._loop.remove_reader(proc.stdout.fileno())
            if self._waiting or not self._stopping:
                self._fail("the journal's committer process exited")
            return
        self._inbox += chunk
        for answer in _frames(self._inbox):
            refusals: list[str | None] = pickle.loads(answer)
            self.batches += 1
            self.operations += len(refusals)
            for refusal in refusals:
                future = self._waiting.popleft()
                if future.done():  # its awaiter was cancelled; the mark committed regardless
                    continue
                if refusal is None:
                    future.set_result(None)
                else:
                    future.set_exception(JournalError(refusal))

    def _fail(self, why: str) -> None:
        self._failure = why
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_exception(JournalError(why))


def _frames(buffer: bytearray) -> list[bytes]:
    """Take every complete frame off the front of ``buffer``."""
    out: list[bytes] = []
    while len(buffer) >= _LENGTH.size:
        (size,) = _LENGTH.unpack_from(buffer)
        if len(buffer) < _LENGTH.size + size:
            break
        out.append(bytes(buffer[_LENGTH.size : _LENGTH.size + size]))
        del buffer[: _LENGTH.size + size]
    return out


# -- the child process ------------------------------------------------------------------------


def apply(conn: sqlite3.Connection, marks: Sequence[q.Mark]) -> list[str | None]:
    """Apply ``marks`` in one transaction; per mark, None or why it was refused."""
    try:
        conn.execute("BEGIN IMMEDIATE")
        refused: list[str | None] = _apply_each(conn, marks)
        conn.execute("COMMIT")
    except sqlite3.Error as exc:  # nothing of the transaction is durable
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        return [f"journal database: {exc}"] * len(marks)
    return refused


def _apply_each(conn: sqlite3.Connection, marks: Sequence[q.Mark]) -> list[str | None]:
    try:
        return [None if e is None else str(e) for e in q.mark_items(conn, marks)]
    except sqlite3.Error as exc:
        if len(marks) == 1:
            return [f"journal database: {exc}"]
        # Nothing of the statement was applied: each alone, so only the culprit fails.
        return [_apply_each(conn, [mark])[0] for mark in marks]


def main(argv: Sequence[str]) -> int:
    path, synchronous = argv
    if synchronous not in ("FULL", "NORMAL"):
        raise SystemExit(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
    # The runner handles signals (a drain still journals): this process ends with its input.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    conn = sqlite3.connect(path, isolation_level=None, timeout=30.0)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("PRAGMA foreign_keys = ON")
    inbox = bytearray()
    ended = False
    try:
        while not ended:
            marks: list[q.Mark] = []
            # Block for the first frame, then take whatever else is already waiting.
            while not marks or (len(marks) < MAX_MARKS_PER_COMMIT and _ready(0)):
                chunk = os.read(0, _READ_SIZE)
                if not chunk:
                    ended = True
                    break
                inbox += chunk
                for frame in _frames(inbox):
                    marks += (q.Mark(*values) for values in pickle.loads(frame))
            if ended:
                # The runner is gone (``stop()`` closes the input only once every mark was
                # answered): nobody waits for these, and its next run must find the journal
                # as it left it, not changing under it.
                break
            if marks:
                answer = pickle.dumps(apply(conn, marks), protocol=pickle.HIGHEST_PROTOCOL)
                try:
                    _write_all(1, _LENGTH.pack(len(answer)) + answer)
                except BrokenPipeError:  # the runner died while this transaction committed
                    break
    finally:
        conn.close()
    return 0


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _ready(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])
