"""The journals under test: SQLite on a real file in ``tmp_path``, PostgreSQL in a database of
the test's own on the machine's server (``pg_url``), and the in-memory one beside them.

One conformance suite: a test that takes ``journal`` (or ``make_journal``) runs against all
three; one that takes ``reopen`` (a journal opened again, by another process too) runs against
the two durable ones, through ``open_journal`` as every command opens them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from runner.journal import ItemRef, Journal, MemoryJournal, SqliteJournal
from runner.journal.open import JournalTarget, open_journal

JOB_TEXT = """name = "migration"
environment = "dev"
site = "acme"

[source]
csv = "rows.csv"

[[actions]]
type = "comment.add"
issue = "{issue}"
text = "Migrated by {account_id}"
"""


MakeItem = Callable[..., ItemRef]
OpenJob = Callable[..., Awaitable[str]]


def make_item(row: int, action: int = 0, *, site: str = "acme") -> ItemRef:
    """Row ``row``'s action ``action``, for the row's own account."""
    return ItemRef(f"row-{row:07d}", action, site, f"5ca1ab1e{row:016x}", "comment.add")


@pytest.fixture
def item() -> MakeItem:
    """``item(row, action=0, site="acme")``: an ItemRef with a per-row account."""
    return make_item


@pytest.fixture
def journal_file(tmp_path: Path) -> Path:
    return tmp_path / "forge-runner.db"


@pytest.fixture
def job_file(tmp_path: Path) -> Path:
    path = tmp_path / "migration.toml"
    path.write_text(JOB_TEXT)
    return path


@pytest.fixture
def open_sqlite(journal_file: Path) -> Callable[[], SqliteJournal]:
    """``async with open_sqlite() as journal:`` on the test's journal file."""
    return lambda: SqliteJournal(journal_file)


@pytest.fixture
def job_text(job_file: Path) -> str:
    """The job file's text."""
    return job_file.read_text()


@pytest.fixture
def job_ident(job_file: Path) -> str:
    """The job's path as the journal records it: absolute, links resolved."""
    return str(job_file.resolve())


def _target(backend: str, request: pytest.FixtureRequest, journal_file: Path) -> JournalTarget:
    if backend == "postgres":
        url: str = request.getfixturevalue("pg_url")
        return url
    return journal_file


@pytest.fixture(params=["sqlite", "postgres"])
def target(request: pytest.FixtureRequest, journal_file: Path) -> JournalTarget:
    """Where the durable journal under test lives: the SQLite file, or a PostgreSQL URL."""
    return _target(request.param, request, journal_file)


@pytest.fixture
def reopen(target: JournalTarget) -> Callable[..., Journal]:
    """``async with reopen() as journal:`` the durable journal under test, opened afresh each
    call (``reopen(create=False)`` as status and report open it)."""
    return lambda **kwargs: open_journal(target, **kwargs)


@pytest.fixture(params=["sqlite", "postgres", "memory"])
def make_journal(request: pytest.FixtureRequest, journal_file: Path) -> Callable[[], Journal]:
    """Builds the journal under test: SQLite on a file, PostgreSQL, or the in-memory one."""
    if request.param == "memory":
        return MemoryJournal
    where = _target(request.param, request, journal_file)
    return lambda: open_journal(where)


@pytest.fixture
async def journal(make_journal: Callable[[], Journal]) -> AsyncIterator[Journal]:
    async with make_journal() as opened:
        yield opened


@pytest.fixture
def open_job(job_file: Path) -> OpenJob:
    """``await open_job(journal, fingerprint=..., config=..., fresh=..., text=...)``: open or
    resume the run of the job file; its run ID."""

    async def open_(journal: Journal, *, fingerprint: str = "job-1", config: str = "config-1",
                    fresh: bool = False, text: str | None = None) -> str:
        handle = await journal.open_run(
            "migration", str(job_file), fingerprint, config,
            JOB_TEXT if text is None else text, fresh=fresh,
        )
        return handle.run_id

    return open_
