"""The SQLite journal's statements, as functions of a connection (run in the journal's threads).

Each function does one thing a journal method needs; the transaction around it is the caller's
(the writer thread's batch, or the reader thread's snapshot).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from runner.journal.base import (
    PROBLEM_STATES,
    ItemRecord,
    ItemRef,
    ItemState,
    ReasonCount,
    RunCounts,
    RunRecord,
    RunState,
)
from runner.journal.rules import check_move
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


def mark_item(
    conn: sqlite3.Connection,
    run_id: str,
    item: ItemRef,
    state: ItemState,
    reason: str | None,
    detail: str | None,
    result: str | None,
    now: float,
) -> int:
    """Move ``item`` to ``state`` (inserting it when first touched); returns its attempts.

    ``reason`` and ``detail`` replace the last ones (None clears them); ``result`` is kept
    from before unless a new one is given. One statement, so a batch needs no savepoint for
    it: the upsert's WHERE is ``check_move`` (nothing leaves ``done``), and no row returned
    means it refused.
    """
    started = 1 if state is ItemState.STARTED else 0
    row = conn.execute(
        f"INSERT INTO items ({ITEM_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) "
        "ON CONFLICT (run_id, row_key, action_index) DO UPDATE SET "
        "action = excluded.action, state = excluded.state, "
        "attempts = items.attempts + excluded.attempts, "
        "reason = excluded.reason, detail = excluded.detail, "
        "result = coalesce(excluded.result, items.result), site = excluded.site, "
        "account_id = excluded.account_id, updated_at = excluded.updated_at "
        "WHERE items.state <> 'done' OR excluded.state = 'done' "
        "RETURNING attempts",
        (run_id, item.row_key, item.action_index, item.action, state.value, started, reason,
         detail, result, item.site, item.account_id, now),
    ).fetchone()
    if row is None:
        check_move(item.key, ItemState.DONE, state)  # raises: the item is done
    return int(row[0])


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
