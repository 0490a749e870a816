"""The row keys of a job, checked for repeats on disk, so a million rows cost no more memory.

Two rows with one ``row_key`` value would share items (the second would never run), so every
key is checked against all before it. Held in memory, a million keys cost tens of megabytes
(a ``set`` of strings ~100 bytes each; 64-bit hashes in sorted arrays ~16 bytes each plus their
merges): measured with ``bench/memory.py``, that was all the growth of ``plan`` and ``run``
from 100,000 to 1,000,000 rows. Here they go to a private temporary SQLite database, which
SQLite deletes when it is closed and keeps in a few megabytes of page cache, spilling the
rest to a temporary file. Keys are inserted in sorted batches; a batch that inserts fewer keys
than it holds has a repeat, found exactly (by value, with the first row's place).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from types import TracebackType
from typing import Self

BATCH = 2048
CACHE_KIB = 4096


@dataclass(frozen=True)
class Repeat:
    """A key seen again: at ``where``, first at ``first``."""

    key: str
    where: str
    first: str


def _key(pair: tuple[str, str]) -> str:
    return pair[0]


class RowKeys:
    """``with RowKeys() as keys:`` then ``keys.add(key, where)`` per row, ``keys.finish()``.

    ``add`` and ``finish`` return the first repeat in source order once its batch is checked,
    else None. ``where`` must name each row's place uniquely (``rows.csv line 17``).
    """

    def __init__(self, *, batch: int = BATCH, cache_kib: int = CACHE_KIB) -> None:
        self._batch = max(1, batch)
        # "" is a temporary on-disk database: private, deleted on close, paged like any other.
        self._conn = sqlite3.connect("", isolation_level=None)
        self._conn.execute(f"PRAGMA cache_size = -{int(cache_kib)}")
        # Nothing here needs to survive a crash: no rollback journal, no fsync.
        self._conn.execute("PRAGMA journal_mode = OFF")
        self._conn.execute("PRAGMA synchronous = OFF")
        self._conn.execute("CREATE TABLE seen (key TEXT PRIMARY KEY, at TEXT NOT NULL) "
                           "WITHOUT ROWID")
        self._pending: list[tuple[str, str]] = []

    def add(self, key: str, where: str) -> Repeat | None:
        self._pending.append((key, where))
        if len(self._pending) >= self._batch:
            return self._flush()
        return None

    def finish(self) -> Repeat | None:
        """Check the keys still pending."""
        return self._flush()

    def _flush(self) -> Repeat | None:
        batch, self._pending = self._pending, []
        if not batch:
            return None
        before = self._conn.total_changes
        self._conn.execute("BEGIN")
        # Sorted by key (stably: a repeated key's rows stay in source order, so the first is
        # the one kept): neighbouring keys land on the same pages, fewer pages per batch.
        ordered: list[tuple[str, str]] = sorted(batch, key=_key)
        self._conn.executemany("INSERT OR IGNORE INTO seen (key, at) VALUES (?, ?)", ordered)
        self._conn.execute("COMMIT")
        if self._conn.total_changes - before == len(batch):
            return None
        # INSERT OR IGNORE kept each key's first row, so a row whose place is not the one
        # stored repeats a key; the rows are visited in source order to report the first.
        for key, where in batch:
            (first,) = self._conn.execute("SELECT at FROM seen WHERE key = ?", (key,)).fetchone()
            if first != where:
                return Repeat(key, where, first)
        return None  # pragma: no cover (a short insert count always has a repeat)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
