"""The SQLite journal's tables, and rows turned into records.

Items are keyed by (run, row key, action index) without a rowid: the key is what every lookup
uses. Per-run counts by state live in ``run_counts``, kept by triggers, so `status` over runs of
a million items reads a handful of rows instead of counting them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from runner.errors import JournalError
from runner.journal.base import ItemRecord, ItemState, RunRecord, RunState
from runner.journal.rules import load_result

SCHEMA = """
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY,
    job_name TEXT NOT NULL,
    job_path TEXT NOT NULL,
    job_fingerprint TEXT NOT NULL,
    config_fingerprint TEXT NOT NULL,
    job_text TEXT NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL,
    state TEXT NOT NULL,
    total_items INTEGER,
    holder TEXT NOT NULL
);
CREATE INDEX runs_by_job ON runs (job_path, started_at);

CREATE TABLE items (
    run_id TEXT NOT NULL REFERENCES runs (run_id),
    row_key TEXT NOT NULL,
    action_index INTEGER NOT NULL,
    action TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    reason TEXT,
    detail TEXT,
    result TEXT,
    site TEXT NOT NULL,
    account_id TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (run_id, row_key, action_index)
) WITHOUT ROWID;
-- report, requeue and retry --failed read one state of one run
CREATE INDEX items_by_state ON items (run_id, state, row_key, action_index);

CREATE TABLE run_counts (
    run_id TEXT NOT NULL,
    state TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (run_id, state)
) WITHOUT ROWID;

CREATE TRIGGER items_count_insert AFTER INSERT ON items BEGIN
    INSERT INTO run_counts (run_id, state, n) VALUES (new.run_id, new.state, 1)
    ON CONFLICT (run_id, state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER items_count_update AFTER UPDATE OF state ON items
WHEN old.state <> new.state BEGIN
    UPDATE run_counts SET n = n - 1 WHERE run_id = old.run_id AND state = old.state;
    INSERT INTO run_counts (run_id, state, n) VALUES (new.run_id, new.state, 1)
    ON CONFLICT (run_id, state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER items_count_delete AFTER DELETE ON items BEGIN
    UPDATE run_counts SET n = n - 1 WHERE run_id = old.run_id AND state = old.state;
END;
"""

# Each step moves the schema from version ``n - 1`` to ``n`` (index ``n - 1``); the version is
# SQLite's ``user_version``. Add a step to change the schema; never edit one that has shipped.
MIGRATIONS: list[str] = [SCHEMA]

RUN_COLUMNS = (
    "run_id, job_name, job_path, job_fingerprint, config_fingerprint, job_text, started_at, "
    "ended_at, state, total_items, holder"
)
ITEM_COLUMNS = (
    "run_id, row_key, action_index, action, state, attempts, reason, detail, result, site, "
    "account_id, updated_at"
)


def ensure_schema(conn: sqlite3.Connection, where: str = "") -> None:
    """Migrate the journal forward to this code's version (creating the tables in a new one),
    inside the writer's transaction; refuse one written by a newer forge-runner."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    latest = len(MIGRATIONS)
    if version == latest:
        return
    if version > latest:
        raise newer_journal(where, version, latest)
    if version == 0:
        tables = conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
        if tables:
            raise JournalError("the file is an SQLite database but not a forge-runner journal")
    for step in MIGRATIONS[version:]:
        for statement in _statements(step):
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {latest}")


def newer_journal(where: str, version: int, latest: int) -> JournalError:
    return JournalError(
        f"journal {where}: written by a newer forge-runner (schema version {version}; this "
        f"one knows up to {latest}); upgrade forge-runner to use it"
    )


def _statements(script: str) -> list[str]:
    # executescript() would COMMIT the caller's transaction; split on complete statements.
    out: list[str] = []
    current = ""
    for line in script.splitlines(keepends=True):
        if line.lstrip().startswith("--"):
            continue
        current += line
        if sqlite3.complete_statement(current):
            out.append(current.strip())
            current = ""
    return out


def run_from_row(row: Sequence[Any], counts: dict[ItemState, int]) -> RunRecord:
    return RunRecord(
        run_id=row[0],
        job_name=row[1],
        job_path=row[2],
        job_fingerprint=row[3],
        config_fingerprint=row[4],
        job_text=row[5],
        started_at=row[6],
        ended_at=row[7],
        state=RunState(row[8]),
        total_items=row[9],
        holder=row[10],
        counts=counts,
    )


def item_from_row(row: Sequence[Any]) -> ItemRecord:
    return ItemRecord(
        run_id=row[0],
        row_key=row[1],
        action_index=row[2],
        action=row[3],
        state=ItemState(row[4]),
        attempts=row[5],
        reason=row[6],
        detail=row[7],
        result=load_result(row[8]),
        site=row[9],
        account_id=row[10],
        updated_at=row[11],
    )

