"""Which journal a command uses, and opening it: the one place that tells SQLite from
PostgreSQL.

``[runner] journal`` is a file path (SQLite, the default) or a ``postgresql://`` URL;
``[runner] journal_url_env`` names an environment variable holding the URL instead, so a
password stays out of the file. ``journal_target`` says which, ``open_journal`` opens it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from runner.config.configfile import RunnerSettings
from runner.events import Emitter
from runner.journal.base import Journal
from runner.journal.outage import WAIT_S
from runner.journal.pgurl import is_postgres_url, safe_url
from runner.journal.sqlite import SqliteJournal

JournalTarget = Path | str


def journal_target(settings: RunnerSettings) -> JournalTarget:
    """The configured journal: a PostgreSQL URL (``str``), else the SQLite file (``Path``)."""
    return settings.journal_url if settings.journal_url is not None else settings.journal


def describe(target: JournalTarget) -> str:
    """The journal as a user may read it: a file's path, or the URL without its password."""
    return safe_url(target) if isinstance(target, str) else str(target)


def parse_target(text: str) -> JournalTarget:
    """``--journal``'s value: a ``postgresql://`` URL, else a file path."""
    return text if is_postgres_url(text) else Path(text)


def open_journal(
    target: JournalTarget,
    *,
    create: bool = True,
    clock: Callable[[], float] = time.time,
    wait_s: float = WAIT_S,
    emit: Emitter | None = None,
) -> Journal:
    """The journal at ``target``, to be opened with ``async with``. ``wait_s`` and ``emit``
    are PostgreSQL's: how long to wait for a database that went away mid-run, and where to say
    so."""
    if isinstance(target, str):
        if not is_postgres_url(target):
            raise ValueError(f"not a postgresql:// URL: {safe_url(target)}")
        # Imported here: psycopg takes a good part of a command's start-up, and most journals
        # are SQLite files.
        from runner.journal.postgres import PostgresJournal

        return PostgresJournal(target, create=create, clock=clock, wait_s=wait_s, emit=emit)
    return SqliteJournal(target, create=create, clock=clock)
