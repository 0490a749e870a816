"""The SQLite journal's statements, as functions of a connection (run in the journal's threads).

Each function does one thing a journal method needs; the transaction around it is the caller's
(the writer thread's transaction, or the reader thread's snapshot).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import NamedTuple

from runner.errors import JournalError
from runner.journal.base import (
    PROBLEM_STATES,
    ItemRecord,
    ItemRef,
    ItemState,
    ReasonCount,
    RunCounts,
    RunRecord,
    RunState,
    item_key,
)
from runner.journal.rules import refused_move
from runner.journal.schema import ITEM_COLUMNS, RUN_COLUMNS, item_from_row, run_from_row

# Row keys per query when asking for items' states (SQLite allows 32766 parameters; a few
# hundred keep each query short so the reader stays responsive).
STATES_CHUNK = 500

# -- runs -------------------------------------------------------------------------------------


def counts_of(conn: sqlite3.Connection, run_ids: Sequence[str]) -> dict[str, dict[ItemState, int]]:
    out: dict[str, dict[ItemState, int]] = {run_id: {} for run_id in run_ids}
    if not run_ids:
        return out
    marks = ",".join("?" * len(run_ids))
    for run_id, state, n in conn.execute(
        f"SELECT run_id, state, n FROM run_counts WHERE run_id IN ({marks}) AND n > 0",
        tuple(run_ids),
    ):
        out[run_id][ItemState(state)] = n
    return out


def get_run(conn: sqlite3.Connection, run_id: str) -> RunRecord | None:
    row = conn.execute(f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    if row is None:
        return None
    return run_from_row(row, counts_of(conn, [run_id])[run_id])


def latest_run(conn: sqlite3.Connection, job_path: str) -> RunRecord | None:
    """The job's newest run (by start; rowid breaks ties within a clock tick)."""
    row = conn.execute(
        f"SELECT {RUN_COLUMNS} FROM runs WHERE job_path = ? "
        "ORDER BY started_at DESC, rowid DESC LIMIT 1",
        (job_path,),
    ).fetchone()
    if row is None:
        return None
    return run_from_row(row, counts_of(conn, [row[0]])[row[0]])


def latest_runs(conn: sqlite3.Connection, limit: int) -> list[RunRecord]:
    rows = conn.execute(
        f"SELECT {RUN_COLUMNS} FROM runs ORDER BY started_at DESC, rowid DESC LIMIT ?",
        (limit,),
    ).fetchall()
    counts = counts_of(conn, [row[0] for row in rows])
    return [run_from_row(row, counts[row[0]]) for row in rows]


def insert_run(conn: sqlite3.Connection, run: RunRecord) -> bool:
    """Insert ``run``; False when its ID is taken."""
    cursor = conn.execute(
        f"INSERT OR IGNORE INTO runs ({RUN_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        (run.run_id, run.job_name, run.job_path, run.job_fingerprint, run.config_fingerprint,
         run.job_text, run.started_at, run.ended_at, run.state.value, run.total_items,
         run.holder),
    )
    return cursor.rowcount == 1


def set_running(conn: sqlite3.Connection, run_id: str, holder: str, config_fp: str) -> None:
    conn.execute(
        "UPDATE runs SET state = 'running', ended_at = NULL, holder = ?, "
        "config_fingerprint = ? WHERE run_id = ?",
        (holder, config_fp, run_id),
    )


def set_total(conn: sqlite3.Connection, run_id: str, total_items: int) -> None:
    conn.execute("UPDATE runs SET total_items = ? WHERE run_id = ?", (total_items, run_id))


def set_ended(conn: sqlite3.Connection, run_id: str, state: RunState, now: float) -> None:
    conn.execute(
        "UPDATE runs SET state = ?, ended_at = ? WHERE run_id = ?", (state.value, now, run_id)
    )


def requeue(
    conn: sqlite3.Connection, run: RunRecord, states: Sequence[ItemState], now: float
) -> int:
    marks = ",".join("?" * len(states))
    cursor = conn.execute(
        "UPDATE items SET state = 'pending', reason = NULL, detail = NULL, updated_at = ? "
        f"WHERE run_id = ? AND state IN ({marks})",
        (now, run.run_id, *states),
    )
    moved = cursor.rowcount
    if moved and run.state is RunState.FINISHED:
        # Work is back in line: the next run of the job picks this run up again.
        conn.execute("UPDATE runs SET state = 'interrupted' WHERE run_id = ?", (run.run_id,))
    return moved


def done_by_action(conn: sqlite3.Connection, run_id: str) -> dict[int, int]:
    return {
        index: n
        for index, n in conn.execute(
            "SELECT action_index, count(*) FROM items WHERE run_id = ? AND state = 'done' "
            "GROUP BY action_index",
            (run_id,),
        )
    }


def run_counts(conn: sqlite3.Connection, run: RunRecord) -> RunCounts:
    by_site: dict[str, dict[ItemState, int]] = {}
    for site, state, n in conn.execute(
        "SELECT site, state, count(*) FROM items WHERE run_id = ? "
        "GROUP BY site, state ORDER BY site",
        (run.run_id,),
    ):
        by_site.setdefault(site, {})[ItemState(state)] = n
    marks = ",".join("?" * len(PROBLEM_STATES))
    by_reason = [
        ReasonCount(ItemState(state), reason, n)
        for state, reason, n in conn.execute(
            "SELECT state, reason, count(*) AS n FROM items "
            f"WHERE run_id = ? AND state IN ({marks}) AND reason IS NOT NULL "
            "GROUP BY state, reason ORDER BY n DESC, state, reason",
            (run.run_id, *PROBLEM_STATES),
        )
    ]
    return RunCounts(run, run.by_state(), by_site, by_reason)


# -- items ------------------------------------------------------------------------------------


class Mark(NamedTuple):
    """One item's move, as the values of an ``items`` row (``attempts`` is 1 for a start)."""

    run_id: str
    row_key: str
    action_index: int
    action: str
    state: str
    attempts: int
    reason: str | None
    detail: str | None
    result: str | None
    site: str
    account_id: str
    updated_at: float

    @classmethod
    def of(
        cls,
        run_id: str,
        item: ItemRef,
        state: ItemState,
        reason: str | None,
        detail: str | None,
        result: str | None,
        now: float,
    ) -> Mark:
        return cls(run_id, item.row_key, item.action_index, item.action, state.value,
                   1 if state is ItemState.STARTED else 0, reason, detail, result, item.site,
                   item.account_id, now)


# Inserted when first touched, else moved. ``reason`` and ``detail`` replace the last ones
# (None clears them); ``result`` is kept from before unless a new one is given. The WHERE is
# ``check_move``: nothing leaves ``done``, and a refused move changes no row.
_UPSERT_HEAD = f"INSERT INTO items ({ITEM_COLUMNS}) VALUES "
_UPSERT_ROW = "(" + ",".join("?" * len(Mark._fields)) + ")"
_UPSERT_TAIL = (
    " ON CONFLICT (run_id, row_key, action_index) DO UPDATE SET "
    "action = excluded.action, state = excluded.state, "
    "attempts = items.attempts + excluded.attempts, "
    "reason = excluded.reason, detail = excluded.detail, "
    "result = coalesce(excluded.result, items.result), site = excluded.site, "
    "account_id = excluded.account_id, updated_at = excluded.updated_at "
    "WHERE items.state <> 'done' OR excluded.state = 'done'"
)
# Rows per statement: 12 parameters each, far inside SQLite's 32,766.
MARKS_PER_STATEMENT = 256


def mark_items(conn: sqlite3.Connection, marks: Sequence[Mark]) -> list[JournalError | None]:
    """Apply ``marks`` in order, all or none; for each, None or the error that refused it.

    As few statements as possible (one for a whole transaction, usually): SQLite's work per
    statement, not per row, is most of what a small batch costs.
    """
    chunks = distinct_chunks(marks, cap=MARKS_PER_STATEMENT)
    if len(chunks) == 1:
        return _upsert(conn, chunks[0])
    # Several statements: a savepoint keeps them all-or-none, as the writer thread expects
    # of a grouped call (``DbThread.submit_grouped``).
    conn.execute("SAVEPOINT marks")
    try:
        out = [error for chunk in chunks for error in _upsert(conn, chunk)]
    except BaseException:
        conn.execute("ROLLBACK TO marks")
        conn.execute("RELEASE marks")
        raise
    conn.execute("RELEASE marks")
    return out


def _upsert(conn: sqlite3.Connection, marks: Sequence[Mark]) -> list[JournalError | None]:
    changed = conn.execute(
        _UPSERT_HEAD + ",".join([_UPSERT_ROW] * len(marks)) + _UPSERT_TAIL,
        [value for mark in marks for value in mark],
    ).rowcount
    if changed == len(marks):
        return [None] * len(marks)
    # Some move was refused. Each item appears once in the statement, so one still ``done``
    # that was to become something else is one whose move was refused.
    done = _done_keys(conn, marks[0].run_id, [m for m in marks if m.state != ItemState.DONE])
    out: list[JournalError | None] = []
    for mark in marks:
        if (mark.row_key, mark.action_index) in done:
            out.append(refused_move(item_key(mark.row_key, mark.action_index),
                                    ItemState(mark.state)))
        else:
            out.append(None)
    return out


def _done_keys(
    conn: sqlite3.Connection, run_id: str, marks: Sequence[Mark]
) -> set[tuple[str, int]]:
    out: set[tuple[str, int]] = set()
    for mark in marks:
        row = conn.execute(
            "SELECT state FROM items WHERE run_id = ? AND row_key = ? AND action_index = ?",
            (run_id, mark.row_key, mark.action_index),
        ).fetchone()
        if row is not None and row[0] == ItemState.DONE:
            out.add((mark.row_key, mark.action_index))
    return out


def distinct_chunks(marks: Sequence[Mark], *, cap: int | None) -> list[list[Mark]]:
    """Split ``marks`` in order so no chunk holds an item twice or more than ``cap`` marks:
    within one statement, a second move of the same item would be ambiguous to report (and
    PostgreSQL refuses to update a row twice in one statement)."""
    chunks: list[list[Mark]] = [[]]
    seen: set[tuple[str, str, int]] = set()
    for mark in marks:
        key = (mark.run_id, mark.row_key, mark.action_index)
        if key in seen or (cap is not None and len(chunks[-1]) >= cap):
            chunks.append([])
            seen.clear()
        chunks[-1].append(mark)
        seen.add(key)
    return chunks


def item_states(
    conn: sqlite3.Connection, run_id: str, row_keys: Sequence[str]
) -> dict[str, ItemRecord]:
    out: dict[str, ItemRecord] = {}
    for start in range(0, len(row_keys), STATES_CHUNK):
        chunk = row_keys[start : start + STATES_CHUNK]
        marks = ",".join("?" * len(chunk))
        for row in conn.execute(
            f"SELECT {ITEM_COLUMNS} FROM items WHERE run_id = ? AND row_key IN ({marks})",
            (run_id, *chunk),
        ):
            record = item_from_row(row)
            out[record.key] = record
    return out


def item_page(
    conn: sqlite3.Connection, run_id: str, state: ItemState, after: tuple[str, int], size: int
) -> list[ItemRecord]:
    """Up to ``size`` items of one state, in key order, after the key ``after`` (keyset
    paging: each page is an index range, however deep into the run it is)."""
    rows = conn.execute(
        f"SELECT {ITEM_COLUMNS} FROM items WHERE run_id = ? AND state = ? "
        "AND (row_key, action_index) > (?, ?) ORDER BY row_key, action_index LIMIT ?",
        (run_id, state.value, *after, size),
    ).fetchall()
    return [item_from_row(row) for row in rows]
