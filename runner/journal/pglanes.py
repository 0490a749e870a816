"""The statements by which several workers share a run on PostgreSQL: workers, lanes, flows.

A *lane* is one user of one run on one site: all that user's items, in row order, leased to
one worker at a time. Every decision is judged by the database's clock (``now()``), so no
worker's clock can make it steal a live lease:

- a claim takes lanes that are ready, or whose lease lapsed, in weighted fair order over the
  runs' flows (one flow per run and site; a grant adds the lanes' rows over the flow's weight
  to its virtual time, and the flow with the lowest goes first), skipping rows another claim
  holds (``FOR UPDATE SKIP LOCKED`` in a ``MATERIALIZED`` CTE, so the planner can't take more
  than the limit), raising the lane's fence by one;
- a lapsed lease is not taken over until a lease term has passed since the server started, so
  a restart of the database never hands a lane away from a worker that could not renew only
  because the server was down;
- a renewal extends only the lanes this worker names (those it knows it holds) that it still
  holds and whose lease has not lapsed; a lane missing from its answer is lost to it, and a
  lane held in its name that it did not name (a claim whose answer was lost) lapses;
- a lane ends ``done`` only while its owner and fence still hold it and no row was added
  since its owner read them.

The functions run on a connection given by the caller, each one statement (autocommit), so no
transaction is ever open across anything else.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from runner.journal.base import ItemRecord
from runner.journal.pgqueries import Conn
from runner.journal.schema import ITEM_COLUMNS, item_from_row

# A lane whose lease lapsed may be claimed: the server's own start counts as a renewal.
_CLAIMABLE = (
    "(l.state = 'ready' OR (l.state = 'held' AND l.lease_until < now() "
    "AND now() > pg_postmaster_start_time() + make_interval(secs => l.lease_s)))"
)


@dataclass(frozen=True)
class Grant:
    """A lane this worker now holds, under ``fence``, for ``left_s`` more seconds (as the
    database judged it when it answered)."""

    run_id: str
    site: str
    account_id: str
    fence: int
    rows: int
    left_s: float

    @property
    def lane(self) -> tuple[str, str, str]:
        return (self.run_id, self.site, self.account_id)


@dataclass(frozen=True)
class OpenRun:
    run_id: str
    job_path: str
    job_text: str
    columns: tuple[str, ...]
    placed: str | None = None  # a template's run: its site, JSON (``runner.cluster.placed``)


@dataclass(frozen=True)
class LaneRow:
    row_key: str
    seq: int
    line: int
    fields: Mapping[str, str]


# -- workers ----------------------------------------------------------------------------------


async def register_worker(conn: Conn, worker_id: str, host: str, pid: int,
                          proc_start: str) -> None:
    await conn.execute(
        "INSERT INTO workers (id, host, pid, proc_start) VALUES (%s, %s, %s, %s)",
        (worker_id, host, pid, proc_start),
    )


async def renew(conn: Conn, worker_id: str, held: Sequence[tuple[tuple[str, str, str], int]]
                ) -> list[tuple[tuple[str, str, str], int, float]]:
    """Extend the leases this worker knows it holds (``held``: each lane with its fence) that
    the database still counts as its own; (lane, fence, seconds left) of each.

    Only the lanes named: a lane the database has under this worker's name but the worker does
    not know of (a claim committed whose answer the connection lost, a lease the worker gave
    up on its own clock) is left to lapse and be taken over, not kept alive unworked."""
    await conn.execute("UPDATE workers SET heartbeat_at = now() WHERE id = %s", (worker_id,))
    if not held:
        return []
    cur = await conn.execute(
        "UPDATE lanes l SET lease_until = now() + make_interval(secs => l.lease_s) "
        "FROM unnest(%(runs)s::text[], %(sites)s::text[], %(accounts)s::text[], "
        "%(fences)s::bigint[]) AS h(run_id, site, account_id, fence) "
        "WHERE l.run_id = h.run_id AND l.site = h.site AND l.account_id = h.account_id "
        "AND l.fence = h.fence AND l.owner = %(me)s AND l.state = 'held' "
        "AND l.lease_until > now() "
        "RETURNING l.run_id, l.site, l.account_id, l.fence, "
        "extract(epoch FROM l.lease_until - now())::double precision",
        {"me": worker_id, "runs": [lane[0] for lane, _ in held],
         "sites": [lane[1] for lane, _ in held], "accounts": [lane[2] for lane, _ in held],
         "fences": [fence for _, fence in held]},
    )
    return [((str(r), str(s), str(a)), int(f), float(left))
            for r, s, a, f, left in await cur.fetchall()]


async def stop_worker(conn: Conn, worker_id: str) -> int:
    """The worker leaves: its lanes go back in line at once (not after their lease)."""
    cur = await conn.execute(
        "UPDATE lanes SET state = 'ready', owner = NULL, lease_until = NULL "
        "WHERE owner = %s AND state = 'held'",
        (worker_id,),
    )
    await conn.execute("UPDATE workers SET stopped_at = now() WHERE id = %s", (worker_id,))
    return cur.rowcount


async def workers_on(conn: Conn, host: str) -> list[tuple[str, int, str]]:
    """(id, pid, process start) of the workers on ``host`` not known to have stopped."""
    cur = await conn.execute(
        "SELECT id, pid, proc_start FROM workers WHERE host = %s AND stopped_at IS NULL",
        (host,),
    )
    return [(str(i), int(p), str(s)) for i, p, s in await cur.fetchall()]


async def expire_gone(conn: Conn, worker_ids: Sequence[str]) -> int:
    """Workers known to be gone (their process no longer exists on their host): their lanes
    may be claimed now rather than at the end of their lease."""
    if not worker_ids:
        return 0
    cur = await conn.execute(
        "UPDATE lanes SET state = 'ready', owner = NULL, lease_until = NULL "
        "WHERE owner = ANY(%s) AND state = 'held'",
        (list(worker_ids),),
    )
    await conn.execute("UPDATE workers SET stopped_at = now() WHERE id = ANY(%s)",
                       (list(worker_ids),))
    return cur.rowcount


async def live_workers(conn: Conn, stale_s: float) -> list[tuple[str, str, int, float, int]]:
    """(id, host, pid, heartbeat age in s, lanes held) of workers not stopped whose heartbeat
    is younger than ``stale_s``."""
    cur = await conn.execute(
        "SELECT w.id, w.host, w.pid, "
        "extract(epoch FROM now() - w.heartbeat_at)::double precision, "
        "(SELECT count(*) FROM lanes l WHERE l.owner = w.id AND l.state = 'held') "
        "FROM workers w WHERE w.stopped_at IS NULL "
        "AND w.heartbeat_at > now() - make_interval(secs => %s) ORDER BY w.host, w.pid",
        (stale_s,),
    )
    return [(str(i), str(h), int(p), float(age), int(n))
            for i, h, p, age, n in await cur.fetchall()]


# -- runs -------------------------------------------------------------------------------------


async def open_runs(conn: Conn) -> list[OpenRun]:
    cur = await conn.execute(
        "SELECT run_id, job_path, job_text, columns, placed FROM runs "
        "WHERE lanes AND state = 'running' ORDER BY started_at, seq"
    )
    return [OpenRun(str(r), str(p), str(t), tuple(json.loads(c or "[]")), s)
            for r, p, t, c, s in await cur.fetchall()]


async def set_lanes(conn: Conn, run_id: str, columns: Sequence[str],
                    placed: str | None = None) -> None:
    """The run's work is shared by lanes; its rows are loaded from now on. ``placed`` is set
    in the same statement, so no worker sees a template's run without its site."""
    await conn.execute(
        "UPDATE runs SET lanes = true, loaded = false, columns = %s, placed = %s "
        "WHERE run_id = %s",
        (json.dumps(list(columns)), placed, run_id),
    )


async def set_loaded(conn: Conn, run_id: str) -> None:
    await conn.execute("UPDATE runs SET loaded = true WHERE run_id = %s", (run_id,))


async def is_loaded(conn: Conn, run_id: str) -> bool:
    cur = await conn.execute("SELECT loaded FROM runs WHERE run_id = %s", (run_id,))
    row = await cur.fetchone()
    return bool(row and row[0])


async def finish_if_complete(conn: Conn, run_id: str, now: float) -> bool:
    """Finish the run once its rows are all loaded and every lane is done (once: the first
    worker to see it)."""
    cur = await conn.execute(
        "UPDATE runs SET state = 'finished', ended_at = %s WHERE run_id = %s "
        "AND state = 'running' AND loaded AND NOT EXISTS "
        "(SELECT 1 FROM lanes WHERE run_id = %s AND state <> 'done')",
        (now, run_id, run_id),
    )
    return cur.rowcount == 1


async def interrupt_if_idle(conn: Conn, run_id: str, worker_id: str, now: float) -> bool:
    """A worker leaving a run it started: the run is ``interrupted`` unless another worker is
    still working on it (then that one, or the last, finishes it)."""
    cur = await conn.execute(
        "UPDATE runs SET state = 'interrupted', ended_at = %s WHERE run_id = %s "
        "AND state = 'running' AND NOT EXISTS (SELECT 1 FROM lanes WHERE run_id = %s "
        "AND state = 'held' AND owner <> %s AND lease_until > now())",
        (now, run_id, run_id, worker_id),
    )
    return cur.rowcount == 1


async def run_state(conn: Conn, run_id: str) -> str | None:
    cur = await conn.execute("SELECT state FROM runs WHERE run_id = %s", (run_id,))
    row = await cur.fetchone()
    return str(row[0]) if row else None


async def lanes_left(conn: Conn, run_id: str) -> tuple[int, int]:
    """(lanes not done, of which held)."""
    cur = await conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE state = 'held') FROM lanes "
        "WHERE run_id = %s AND state <> 'done'",
        (run_id,),
    )
    row = await cur.fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


async def reopen_requeued(conn: Conn, run_id: str) -> None:
    """Lanes with items put back in line are worked on again."""
    await conn.execute(
        "UPDATE lanes l SET state = 'ready', owner = NULL, lease_until = NULL "
        "WHERE l.run_id = %s AND l.state = 'done' AND EXISTS (SELECT 1 FROM items i "
        "WHERE i.run_id = l.run_id AND i.site = l.site AND i.account_id = l.account_id "
        "AND i.state = 'pending')",
        (run_id,),
    )


# -- loading ----------------------------------------------------------------------------------


_LOAD = (
    "WITH r AS (INSERT INTO run_rows (run_id, row_key, seq, site, account_id, line, fields) "
    "SELECT %(run)s, * FROM unnest(%(keys)s::text[], %(seqs)s::bigint[], %(sites)s::text[], "
    "%(accounts)s::text[], %(lines)s::integer[], %(fields)s::text[]) "
    "ON CONFLICT (run_id, row_key) DO NOTHING RETURNING site, account_id, seq), "
    "g AS (SELECT site, account_id, count(*)::integer AS n, min(seq) AS s FROM r GROUP BY 1, 2) "
    "INSERT INTO lanes (run_id, site, account_id, state, rows, first_seq) "
    "SELECT %(run)s, site, account_id, 'ready', n, s FROM g "
    "ON CONFLICT (run_id, site, account_id) DO UPDATE SET rows = lanes.rows + excluded.rows, "
    "state = CASE WHEN lanes.state = 'done' THEN 'ready' ELSE lanes.state END"
)


async def load_rows(conn: Conn, run_id: str,
                    rows: Sequence[tuple[str, int, str, str, int, Mapping[str, str]]]) -> None:
    """Add (key, seq, site, account, line, fields) rows the run does not have yet, and open
    their lanes (a lane already done is opened again for its new rows)."""
    if not rows:
        return
    keys, seqs, sites, accounts, lines, fields = zip(*rows, strict=True)
    await conn.execute(_LOAD, {
        "run": run_id, "keys": list(keys), "seqs": list(seqs), "sites": list(sites),
        "accounts": list(accounts), "lines": list(lines),
        "fields": [json.dumps(dict(f), separators=(",", ":")) for f in fields],
    })


async def add_flows(conn: Conn, run_id: str, weights: Mapping[str, float]) -> None:
    """One flow per site of the run; a new flow starts at the lowest virtual time of the flows
    of running runs, so a new run neither waits behind old ones nor takes every claim."""
    for site, weight in weights.items():
        await conn.execute(
            "INSERT INTO flows (run_id, site, weight, vtime) SELECT %s, %s, %s, "
            "coalesce((SELECT min(f.vtime) FROM flows f JOIN runs r USING (run_id) "
            "WHERE r.state = 'running' AND r.lanes), 0) "
            "ON CONFLICT (run_id, site) DO UPDATE SET weight = excluded.weight",
            (run_id, site, max(weight, 1e-6)),
        )


# -- lanes ------------------------------------------------------------------------------------


_CLAIM = (
    "WITH f AS MATERIALIZED (SELECT f.run_id, f.site FROM flows f "
    "WHERE f.run_id = ANY(%(runs)s) AND EXISTS (SELECT 1 FROM lanes l WHERE l.run_id = f.run_id "
    f"AND l.site = f.site AND l.state <> 'done' AND {_CLAIMABLE}) "
    "ORDER BY f.vtime, f.run_id, f.site LIMIT 1), "
    "pick AS MATERIALIZED (SELECT l.run_id, l.site, l.account_id FROM lanes l "
    f"JOIN f ON l.run_id = f.run_id AND l.site = f.site WHERE l.state <> 'done' AND {_CLAIMABLE} "
    "ORDER BY l.first_seq LIMIT %(n)s FOR UPDATE OF l SKIP LOCKED), "
    "got AS (UPDATE lanes l SET state = 'held', owner = %(me)s, fence = l.fence + 1, "
    "lease_s = %(lease)s, lease_until = now() + make_interval(secs => %(lease)s) FROM pick "
    "WHERE l.run_id = pick.run_id AND l.site = pick.site AND l.account_id = pick.account_id "
    "RETURNING l.run_id, l.site, l.account_id, l.fence, l.rows, "
    "extract(epoch FROM l.lease_until - now())::double precision AS left_s), "
    "adv AS (UPDATE flows SET vtime = flows.vtime + "
    "(SELECT coalesce(sum(got.rows), 0) FROM got) / flows.weight FROM f "
    "WHERE flows.run_id = f.run_id AND flows.site = f.site) "
    "SELECT run_id, site, account_id, fence, rows, left_s FROM got ORDER BY account_id"
)


async def claim(conn: Conn, worker_id: str, run_ids: Sequence[str], n: int,
                lease_s: float) -> list[Grant]:
    """Up to ``n`` lanes of one flow (the one with the lowest virtual time) among ``run_ids``."""
    if not run_ids or n <= 0:
        return []
    cur = await conn.execute(_CLAIM, {"runs": list(run_ids), "n": n, "me": worker_id,
                                      "lease": float(lease_s)})
    return [Grant(str(r), str(s), str(a), int(f), int(rows), float(left))
            for r, s, a, f, rows, left in await cur.fetchall()]


async def lane_rows(conn: Conn, lane: tuple[str, str, str]) -> list[LaneRow]:
    """The lane's rows in order (``lane_work`` reads their items too)."""
    rows, _ = await lane_work(conn, lane)
    return rows


_LANE_WORK = (
    "SELECT r.row_key, r.seq, r.line, r.fields, "
    + ", ".join(f"i.{c.strip()}" for c in ITEM_COLUMNS.split(","))
    + " FROM run_rows r LEFT JOIN items i ON i.run_id = r.run_id AND i.row_key = r.row_key "
    "WHERE r.run_id = %s AND r.site = %s AND r.account_id = %s ORDER BY r.seq, i.action_index"
)


async def lane_work(conn: Conn, lane: tuple[str, str, str]
                    ) -> tuple[list[LaneRow], dict[str, ItemRecord]]:
    """The lane's rows in order and their recorded items by item key, in one statement."""
    cur = await conn.execute(_LANE_WORK, lane)
    rows: list[LaneRow] = []
    items: dict[str, ItemRecord] = {}
    for k, s, n, f, *item in await cur.fetchall():
        if not rows or rows[-1].row_key != k:
            rows.append(LaneRow(str(k), int(s), int(n), json.loads(f)))
        if item[0] is not None:
            record = item_from_row(tuple(item))
            items[record.key] = record
    return rows, items


async def finish_lane(conn: Conn, worker_id: str, lane: tuple[str, str, str], fence: int,
                      rows: int) -> str:
    """``done``, or ``last`` when it was the run's last lane not done; ``more`` when rows were
    added since they were read (the lane is still held); ``lost`` when this worker no longer
    holds it."""
    run_id, site, account = lane
    cur = await conn.execute(
        "UPDATE lanes SET state = CASE WHEN rows = %s THEN 'done' ELSE state END, "
        "owner = CASE WHEN rows = %s THEN NULL ELSE owner END, "
        "lease_until = CASE WHEN rows = %s THEN NULL ELSE lease_until END "
        "WHERE run_id = %s AND site = %s AND account_id = %s AND owner = %s AND fence = %s "
        "AND state = 'held' AND lease_until > now() RETURNING state, NOT EXISTS (SELECT 1 "
        "FROM lanes o WHERE o.run_id = %s AND o.state <> 'done' AND NOT (o.site = %s AND "
        "o.account_id = %s))",
        (rows, rows, rows, run_id, site, account, worker_id, fence, run_id, site, account),
    )
    row = await cur.fetchone()
    if row is None:
        return "lost"
    if row[0] != "done":
        return "more"
    return "last" if row[1] else "done"


async def release_lane(conn: Conn, worker_id: str, lane: tuple[str, str, str],
                       fence: int) -> None:
    """Back in line at once (a drain), for any worker to claim."""
    run_id, site, account = lane
    await conn.execute(
        "UPDATE lanes SET state = 'ready', owner = NULL, lease_until = NULL "
        "WHERE run_id = %s AND site = %s AND account_id = %s AND owner = %s AND fence = %s "
        "AND state = 'held'",
        (run_id, site, account, worker_id, fence),
    )


async def lanes_of(conn: Conn, run_id: str) -> list[tuple[str, int]]:
    """(owner, lanes held) of a run's held lanes."""
    cur = await conn.execute(
        "SELECT owner, count(*) FROM lanes WHERE run_id = %s AND state = 'held' "
        "GROUP BY owner ORDER BY owner",
        (run_id,),
    )
    return [(str(o), int(n)) for o, n in await cur.fetchall()]
