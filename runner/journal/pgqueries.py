"""The PostgreSQL journal's statements, as functions of a connection.

Each function does one thing a journal method needs; the transaction around it is the caller's
(the writer's batch, or a pooled connection's single statement). The rules are the SQLite
journal's (``queries.py``), in PostgreSQL's dialect.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import AsyncConnection

from runner.errors import JournalError, LaneLostError
from runner.journal.base import (
    PROBLEM_STATES,
    ItemRecord,
    ItemState,
    ReasonCount,
    RunCounts,
    RunRecord,
    RunState,
    item_key,
)
from runner.journal.queries import Mark, distinct_chunks
from runner.journal.rules import new_run_id, refused_move, this_holder
from runner.journal.schema import ITEM_COLUMNS, RUN_COLUMNS, item_from_row, run_from_row

Conn = AsyncConnection[tuple[Any, ...]]

# -- runs -------------------------------------------------------------------------------------


async def counts_of(conn: Conn, run_ids: Sequence[str]) -> dict[str, dict[ItemState, int]]:
    out: dict[str, dict[ItemState, int]] = {run_id: {} for run_id in run_ids}
    if not run_ids:
        return out
    cur = await conn.execute(
        "SELECT run_id, state, count(*) FROM items WHERE run_id = ANY(%s) "
        "GROUP BY run_id, state",
        (list(run_ids),),
    )
    for run_id, state, n in await cur.fetchall():
        out[str(run_id)][ItemState(state)] = int(n)
    return out


async def get_run(conn: Conn, run_id: str) -> RunRecord | None:
    cur = await conn.execute(f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id = %s", (run_id,))
    row = await cur.fetchone()
    if row is None:
        return None
    return run_from_row(row, (await counts_of(conn, [run_id]))[run_id])


async def latest_run(conn: Conn, job_path: str) -> RunRecord | None:
    """The job's newest run (by start; the insertion sequence breaks ties)."""
    cur = await conn.execute(
        f"SELECT {RUN_COLUMNS} FROM runs WHERE job_path = %s "
        "ORDER BY started_at DESC, seq DESC LIMIT 1",
        (job_path,),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    run_id = str(row[0])
    return run_from_row(row, (await counts_of(conn, [run_id]))[run_id])


async def latest_runs(conn: Conn, limit: int) -> list[RunRecord]:
    cur = await conn.execute(
        f"SELECT {RUN_COLUMNS} FROM runs ORDER BY started_at DESC, seq DESC LIMIT %s", (limit,)
    )
    rows = await cur.fetchall()
    counts = await counts_of(conn, [str(row[0]) for row in rows])
    return [run_from_row(row, counts[str(row[0])]) for row in rows]


async def insert_run(conn: Conn, run: RunRecord) -> bool:
    """Insert ``run``; False when its ID is taken."""
    cur = await conn.execute(
        f"INSERT INTO runs ({RUN_COLUMNS}) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) "
        "ON CONFLICT (run_id) DO NOTHING",
        (run.run_id, run.job_name, run.job_path, run.job_fingerprint, run.config_fingerprint,
         run.job_text, run.started_at, run.ended_at, run.state.value, run.total_items,
         run.holder),
    )
    return cur.rowcount == 1


async def insert_new_run(conn: Conn, job_name: str, ident: str, job_fp: str, config_fp: str,
                         job_text: str, now: float) -> RunRecord:
    """A new run of the job, running, under a fresh ID."""
    for _ in range(10):
        run = RunRecord(
            run_id=new_run_id(now), job_name=job_name, job_path=ident, job_fingerprint=job_fp,
            config_fingerprint=config_fp, job_text=job_text, started_at=now, ended_at=None,
            state=RunState.RUNNING, total_items=None, holder=this_holder(),
        )
        if await insert_run(conn, run):
            return run
    raise JournalError("could not find a free run ID")  # 16M IDs a day: never in practice


async def set_running(conn: Conn, run_id: str, holder: str, config_fp: str) -> None:
    await conn.execute(
        "UPDATE runs SET state = 'running', ended_at = NULL, holder = %s, "
        "config_fingerprint = %s WHERE run_id = %s",
        (holder, config_fp, run_id),
    )


async def set_total(conn: Conn, run_id: str, total_items: int) -> None:
    await conn.execute("UPDATE runs SET total_items = %s WHERE run_id = %s", (total_items, run_id))


async def set_ended(conn: Conn, run_id: str, state: RunState, now: float) -> None:
    await conn.execute(
        "UPDATE runs SET state = %s, ended_at = %s WHERE run_id = %s", (state.value, now, run_id)
    )


async def requeue(conn: Conn, run: RunRecord, states: Sequence[ItemState], now: float) -> int:
    cur = await conn.execute(
        "UPDATE items SET state = 'pending', reason = NULL, detail = NULL, updated_at = %s "
        "WHERE run_id = %s AND state = ANY(%s)",
        (now, run.run_id, [s.value for s in states]),
    )
    moved = cur.rowcount
    if moved and run.state is RunState.FINISHED:
        # Work is back in line: the next run of the job picks this run up again.
        await conn.execute("UPDATE runs SET state = 'interrupted' WHERE run_id = %s",
                           (run.run_id,))
    return moved


async def done_by_action(conn: Conn, run_id: str) -> dict[int, int]:
    cur = await conn.execute(
        "SELECT action_index, count(*) FROM items WHERE run_id = %s AND state = 'done' "
        "GROUP BY action_index",
        (run_id,),
    )
    return {int(i): int(n) for i, n in await cur.fetchall()}


async def run_counts(conn: Conn, run: RunRecord) -> RunCounts:
    by_site: dict[str, dict[ItemState, int]] = {}
    cur = await conn.execute(
        "SELECT site, state, count(*) FROM items WHERE run_id = %s "
        "GROUP BY site, state ORDER BY site",
        (run.run_id,),
    )
    for site, state, n in await cur.fetchall():
        by_site.setdefault(str(site), {})[ItemState(state)] = int(n)
    cur = await conn.execute(
        "SELECT state, reason, count(*) AS n FROM items "
        "WHERE run_id = %s AND state = ANY(%s) AND reason IS NOT NULL "
        "GROUP BY state, reason ORDER BY n DESC, state, reason",
        (run.run_id, [s.value for s in PROBLEM_STATES]),
    )
    by_reason = [ReasonCount(ItemState(state), str(reason), int(n))
                 for state, reason, n in await cur.fetchall()]
    return RunCounts(run, run.by_state(), by_site, by_reason)


# -- items ------------------------------------------------------------------------------------

# One statement for many marks, whatever their number: the marks' columns as arrays. Inserted
# when first touched, else moved; the WHERE refuses any move out of ``done`` (as SQLite's).
_UPSERT = (
    f"INSERT INTO items ({ITEM_COLUMNS}) "
    "SELECT * FROM unnest(%s::text[], %s::text[], %s::integer[], %s::text[], %s::text[], "
    "%s::integer[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], "
    "%s::double precision[]) "
    "ON CONFLICT (run_id, row_key, action_index) DO UPDATE SET "
    "action = excluded.action, state = excluded.state, "
    "attempts = items.attempts + excluded.attempts, "
    "reason = excluded.reason, detail = excluded.detail, "
    "result = coalesce(excluded.result, items.result), site = excluded.site, "
    "account_id = excluded.account_id, updated_at = excluded.updated_at "
    "WHERE items.state <> 'done' OR excluded.state = 'done' "
    "RETURNING run_id, row_key, action_index"
)


async def mark_items(conn: Conn, marks: Sequence[Mark]) -> list[JournalError | None]:
    """Apply ``marks`` in order inside the caller's transaction; for each, None or the error
    that refused it."""
    out: list[JournalError | None] = []
    for chunk in distinct_chunks(marks, cap=None):
        columns = [list(column) for column in zip(*chunk, strict=True)]
        cur = await conn.execute(_UPSERT, columns)
        applied = {(str(r), str(k), int(i))
                   for r, k, i in await cur.fetchall()}
        for mark in chunk:
            if (mark.run_id, mark.row_key, mark.action_index) in applied:
                out.append(None)
            else:
                out.append(refused_move(item_key(mark.row_key, mark.action_index),
                                        ItemState(mark.state)))
    return out


# The same move, accepted only while the item's lane is held by the writer under the fence it
# gives and its lease has not lapsed. ``FOR SHARE`` on the lane makes a takeover (which updates
# the lane's row) and this write wait for each other: whichever commits first, the other sees it.
_FENCED = (
    "WITH v AS (SELECT * FROM unnest(%s::text[], %s::text[], %s::integer[], %s::text[], "
    "%s::text[], %s::integer[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], "
    "%s::double precision[], %s::bigint[], %s::text[]) AS v (run_id, row_key, action_index, "
    "action, state, attempts, reason, detail, result, site, account_id, updated_at, fence, "
    "owner)), "
    "ok AS MATERIALIZED (SELECT v.* FROM v JOIN lanes l ON l.run_id = v.run_id "
    "AND l.site = v.site AND l.account_id = v.account_id AND l.owner = v.owner "
    "AND l.fence = v.fence AND l.state = 'held' AND l.lease_until > now() FOR SHARE OF l) "
    f"INSERT INTO items ({ITEM_COLUMNS}, fence) SELECT {ITEM_COLUMNS}, fence FROM ok "
    "ON CONFLICT (run_id, row_key, action_index) DO UPDATE SET "
    "action = excluded.action, state = excluded.state, "
    "attempts = items.attempts + excluded.attempts, "
    "reason = excluded.reason, detail = excluded.detail, "
    "result = coalesce(excluded.result, items.result), site = excluded.site, "
    "account_id = excluded.account_id, updated_at = excluded.updated_at, "
    "fence = excluded.fence "
    "WHERE items.state <> 'done' OR excluded.state = 'done' "
    "RETURNING run_id, row_key, action_index"
)


async def mark_items_fenced(conn: Conn, marks: Sequence[Mark],
                            guards: Sequence[tuple[str, int]]) -> list[Exception | None]:
    """``mark_items`` for lanes: each mark with its (owner, fence); a mark whose lane is no
    longer the owner's under that fence is refused with ``LaneLostError``."""
    out: list[Exception | None] = []
    guard_of = {id(m): g for m, g in zip(marks, guards, strict=True)}
    for chunk in distinct_chunks(marks, cap=None):
        columns = [list(column) for column in zip(*chunk, strict=True)]
        columns.append([guard_of[id(m)][1] for m in chunk])
        columns.append([guard_of[id(m)][0] for m in chunk])
        cur = await conn.execute(_FENCED, columns)
        applied = {(str(r), str(k), int(i)) for r, k, i in await cur.fetchall()}
        refused = [m for m in chunk if (m.run_id, m.row_key, m.action_index) not in applied]
        held = await _held_lanes(conn, refused, guard_of)
        for mark in chunk:
            if (mark.run_id, mark.row_key, mark.action_index) in applied:
                out.append(None)
            elif (mark.run_id, mark.site, mark.account_id) not in held:
                out.append(LaneLostError(mark.run_id, mark.site, mark.account_id,
                                    "its write was refused: the lease ended or another "
                                    "worker holds the lane"))
            else:
                out.append(refused_move(item_key(mark.row_key, mark.action_index),
                                        ItemState(mark.state)))
    return out


async def _held_lanes(conn: Conn, marks: Sequence[Mark],
                      guard_of: dict[int, tuple[str, int]]) -> set[tuple[str, str, str]]:
    held: set[tuple[str, str, str]] = set()
    for mark in marks:
        owner, fence = guard_of[id(mark)]
        cur = await conn.execute(
            "SELECT 1 FROM lanes WHERE run_id = %s AND site = %s AND account_id = %s "
            "AND owner = %s AND fence = %s AND state = 'held' AND lease_until > now()",
            (mark.run_id, mark.site, mark.account_id, owner, fence),
        )
        if await cur.fetchone() is not None:
            held.add((mark.run_id, mark.site, mark.account_id))
    return held


async def item_states(conn: Conn, run_id: str, row_keys: Sequence[str]) -> dict[str, ItemRecord]:
    # One primary-key probe per row key, whatever the planner knows: with ``row_key =
    # ANY(...)`` a planner without fresh statistics (a run's table grows from empty; a server
    # without autovacuum) scanned every item of the run for each chunk, which made a run of
    # 100,000 rows six times slower than one of 5,000. OFFSET 0 keeps the subquery per key.
    cur = await conn.execute(
        f"SELECT {ITEM_COLUMNS} FROM unnest(%s::text[]) AS k (key) CROSS JOIN LATERAL "
        f"(SELECT {ITEM_COLUMNS} FROM items WHERE run_id = %s AND row_key = k.key OFFSET 0) i",
        (list(row_keys), run_id),
    )
    out: dict[str, ItemRecord] = {}
    for row in await cur.fetchall():
        record = item_from_row(row)
        out[record.key] = record
    return out


async def item_page(
    conn: Conn, run_id: str, state: ItemState, after: tuple[str, int], size: int
) -> list[ItemRecord]:
    """Up to ``size`` items of one state, in key order, after the key ``after`` (keyset
    paging: each page is an index range). Row keys are ``COLLATE "C"``: byte order, as in
    SQLite."""
    cur = await conn.execute(
        f"SELECT {ITEM_COLUMNS} FROM items WHERE run_id = %s AND state = %s "
        "AND (row_key, action_index) > (%s, %s) ORDER BY row_key, action_index LIMIT %s",
        (run_id, state.value, *after, size),
    )
    return [item_from_row(row) for row in await cur.fetchall()]
