"""The durable journal: every run and the state of each of its items, so a run resumes anywhere.

``SqliteJournal`` is the default (one file, WAL, group commit on a writer thread);
``PostgresJournal`` is the one several processes and hosts can share; ``MemoryJournal`` has the
same interface without durability (benchmarks). ``Journal`` is the interface all implement;
``runner.journal.open`` picks the configured one.
"""

from typing import TYPE_CHECKING, Any

from runner.journal.base import (
    PROBLEM_STATES,
    REQUEUEABLE_STATES,
    ItemRecord,
    ItemRef,
    ItemState,
    Journal,
    ReasonCount,
    RunCounts,
    RunHandle,
    RunRecord,
    RunState,
    item_key,
)
from runner.journal.memory import MemoryJournal
from runner.journal.sqlite import SqliteJournal

if TYPE_CHECKING:
    from runner.journal.postgres import PostgresJournal

__all__ = [
    "PROBLEM_STATES",
    "REQUEUEABLE_STATES",
    "ItemRecord",
    "ItemRef",
    "ItemState",
    "Journal",
    "MemoryJournal",
    "PostgresJournal",
    "ReasonCount",
    "RunCounts",
    "RunHandle",
    "RunRecord",
    "RunState",
    "SqliteJournal",
    "item_key",
]


def __getattr__(name: str) -> Any:
    # PostgresJournal on first use: psycopg takes a good part of a command's start-up, and a
    # SQLite journal never needs it.
    if name == "PostgresJournal":
        from runner.journal.postgres import PostgresJournal

        return PostgresJournal
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if TYPE_CHECKING:  # both implement the whole interface (checked by mypy)
    _sqlite: Journal = SqliteJournal("journal.db")
    _memory: Journal = MemoryJournal()
    _postgres: Journal = PostgresJournal("postgresql://localhost/forge_runner")
