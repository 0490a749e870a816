"""One running run per job on PostgreSQL: a session advisory lock on the writer's connection,
with a ``locks`` row beside it saying who holds it (for the message a second process prints).

Why not a lease row renewed by heartbeat: a process that dies (SIGKILL, OOM, a lost host) closes
its connection, and PostgreSQL ends the session and its locks at once, so the job can be resumed
the moment its holder is gone, with no lease term to wait out and no clock to trust; a lease
would keep a killed run's job locked for a whole term. The danger of a session lock, a
connection that drops while the process goes on (another process may then take the job), is
closed by holding the lock on the connection that writes: no write reaches the database on a
session without the lock, and after a reconnect the writer takes every lock again (``relock``)
before it retries anything; a run whose lock it can't take again is lost and gets no more
writes (``holds``).

Every run a process opens holds its own job's lock (``serve`` opens many runs on one journal);
a session may take an advisory lock twice, so a job this process already holds is refused here.
"""

from __future__ import annotations

import hashlib
import uuid

from runner.errors import JournalError, RunLockedError
from runner.journal import pgqueries as q
from runner.journal.pgschema import JOB_LOCK_CLASS
from runner.journal.rules import this_holder

Conn = q.Conn


def lock_key(ident: str) -> int:
    """The job's advisory lock key (the second of the two-key form: a signed 32-bit int)."""
    return int.from_bytes(hashlib.sha256(ident.encode()).digest()[:4], "big", signed=True)


class JobLocks:
    """The jobs this journal object holds, by run; every method runs on the writer's
    connection (inside its batch)."""

    def __init__(self) -> None:
        self.runs: dict[str, str] = {}  # run ID -> job identity
        self.lost: set[str] = set()
        self._owner = uuid.uuid4().hex

    async def take(self, conn: Conn, ident: str) -> bool:
        if ident in self.runs.values():
            return False
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

    async def release(self, conn: Conn, ident: str) -> None:
        await conn.execute("DELETE FROM locks WHERE job_path = %s AND owner = %s",
                           (ident, self._owner))
        await conn.execute("SELECT pg_advisory_unlock(%s, %s)",
                           (JOB_LOCK_CLASS, lock_key(ident)))

    async def release_all(self, conn: Conn) -> None:
        for ident in set(self.runs.values()):
            await self.release(conn, ident)
        self.runs.clear()

    async def refusal(self, conn: Conn, ident: str) -> RunLockedError:
        latest = await q.latest_run(conn, ident)
        cur = await conn.execute("SELECT holder FROM locks WHERE job_path = %s", (ident,))
        row = await cur.fetchone()
        run_id = latest.run_id if latest is not None else f"of {ident}"
        return RunLockedError(run_id, str(row[0]) if row else "another process")

    async def relock(self, conn: Conn) -> None:
        """After a reconnect: take every held job's lock again; a run whose lock another
        process took meanwhile is lost."""
        for run_id, ident in list(self.runs.items()):
            if run_id in self.lost:
                continue
            cur = await conn.execute("SELECT pg_try_advisory_lock(%s, %s)",
                                     (JOB_LOCK_CLASS, lock_key(ident)))
            row = await cur.fetchone()
            if not (row and row[0]):
                self.lost.add(run_id)

    def holds(self, run_id: str) -> bool:
        return run_id in self.runs and run_id not in self.lost

    def check(self, run_id: str) -> None:
        if run_id not in self.runs:
            raise JournalError(f"run {run_id} is not open in this journal (open_run or resume)")
        if run_id in self.lost:
            raise JournalError(f"run {run_id}: this process no longer holds its job (another "
                               "took it over while the journal's database was unreachable)")
