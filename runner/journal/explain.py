"""A journal failure as the one line a user reads: which file, what happened, what to do.

SQLite and the OS say *what* failed (``database or disk is full``, ``attempt to write a
readonly database``); the user also needs *which file* and *what next*. What was journaled is
never at risk: each commit is whole or absent, so after the fix the same command resumes.
"""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

from runner.errors import JournalError, RunnerError

RESUME = "then run the same command again to resume (what was journaled is safe)"

# SQLite's primary result codes (https://www.sqlite.org/rescode.html).
_BUSY, _LOCKED, _READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _PERM, _NOTADB = (
    5, 6, 8, 10, 11, 13, 14, 3, 26
)

# For each kind of failure: what happened, in a user's words, and what to do.
_SAID = {
    "full": ("the disk is full", f"free some space, {RESUME}"),
    "readonly": ("it can't be written", f"make the file and its folder writable, {RESUME}"),
    "cantopen": ("it can't be opened", "check that it is a file, and that it and its folder "
                 f"can be read and written, {RESUME}"),
    "corrupt": ("it is not a journal, or it is damaged", "restore it from a backup, or move it "
                "aside (or set [runner] journal to another file) to start afresh"),
    "ioerr": ("reading or writing it failed", f"check the disk, {RESUME}"),
    "busy": ("another process kept it locked too long", f"let that process finish, {RESUME}"),
}


def _kind(exc: BaseException) -> str | None:
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if code is None:
            return None
        return {
            _FULL: "full", _READONLY: "readonly", _PERM: "readonly", _CANTOPEN: "cantopen",
            _CORRUPT: "corrupt", _NOTADB: "corrupt", _IOERR: "ioerr", _BUSY: "busy",
            _LOCKED: "busy",
        }.get(code & 0xFF)
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return "full"
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return "readonly"
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EISDIR):
            return "cantopen"
        return "ioerr"
    return None


def explain(path: Path, exc: Exception) -> Exception:
    """``exc`` as a JournalError naming ``path`` and what to do; a RunnerError or an
    unexpected exception (a bug) as itself."""
    if isinstance(exc, RunnerError) or not isinstance(exc, sqlite3.Error | OSError):
        return exc
    what = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    kind = _kind(exc)
    if kind is None:
        return JournalError(f"journal {path}: {what}; fix it, {RESUME}")
    happened, todo = _SAID[kind]
    return JournalError(f"journal {path}: {happened} ({what}); {todo}")
