"""One process per job: an exclusive ``flock`` on a lock file beside the journal.

Why a kernel lock and not a lease row (pid + heartbeat): the kernel drops a ``flock`` the moment
its holder dies, however it dies (SIGKILL, OOM, power loss), so a crashed run is free to resume
at once, with no heartbeat to keep, no stale-lease timeout to wait out and no guess about
whether a pid is alive or was reused. An SQLite journal lives on one host's local disk (WAL
needs shared memory), so one host's kernel is the right referee. A journal shared by several
hosts (PostgreSQL) needs leases instead; the journal interface leaves room for them.

The lock is per job (its resolved path), not per run: two cron starts of a job that has no run
yet would otherwise both create one.

Only the runner's own process holds the lock (its file is opened ``O_CLOEXEC``, so no child
inherits it), and the journal writes from a thread of that process: when the lock is free, no
write of a dead run can still be arriving (SQLite rolled back whatever transaction it had open).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from pathlib import Path


def lock_path(journal: Path, job_identity: str) -> Path:
    digest = hashlib.sha256(job_identity.encode()).hexdigest()[:16]
    return journal.with_name(journal.name + ".locks") / f"job-{digest}.lock"


class JobLock:
    """An exclusive lock on one job, held until ``release`` or the process's death."""

    def __init__(self, path: Path, fd: int):
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def try_acquire(cls, path: Path, holder: str) -> JobLock | None:
        """The lock, or None when another open file (any process, this one too) holds it."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        # Who holds it, for the message a second process prints; read without the lock.
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder.encode(), 0)
        return cls(path, fd)

    @staticmethod
    def holder(path: Path) -> str:
        """What the current holder wrote (best effort: it may be mid-write)."""
        try:
            text = path.read_text(errors="replace").strip()
        except OSError:
            return "another process"
        return text or "another process"

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        # The file stays: removing it would let a waiter lock an unlinked inode while a third
        # process creates and locks a new file of the same name.
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
