"""Where the checker's inputs come from: the journal's PostgreSQL tables, the sandbox's logs.

The journal part is kept to two small functions over plain SQL, so that when the tables change
(``items.fence``, the ``lanes`` table of leased work) only these lines follow. A column or table
the journal does not have yet reads as None / nothing, so the checker runs on today's journal.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import aiohttp
import psycopg

from runner.sandbox.arrivals import JiraArrival, MintArrival, jira_from_json, mint_from_json
from tests.cluster.checker import JournalItem


@dataclass(frozen=True)
class Lane:
    """One row of ``lanes``: one user of one run, who holds it, under which fence, until when."""

    run_id: str
    account_id: str
    site: str
    state: str
    owner: str | None
    fence: int
    lease_until: datetime | None


def _columns(conn: psycopg.Connection[tuple[object, ...]], table: str) -> set[str]:
    rows = conn.execute("SELECT column_name FROM information_schema.columns "
                        "WHERE table_schema = current_schema() AND table_name = %s",
                        (table,)).fetchall()
    return {str(r[0]) for r in rows}


def read_items(url: str, run_id: str | None = None) -> list[JournalItem]:
    """The journal's items (of one run, or all), with their fence where the table has one."""
    with psycopg.connect(url, connect_timeout=5) as conn:
        fence = "fence" if "fence" in _columns(conn, "items") else "NULL"
        where = "WHERE run_id = %s" if run_id is not None else ""
        rows = conn.execute(
            f"SELECT run_id, row_key, action_index, action, state, account_id, updated_at, "
            f"{fence} FROM items {where} ORDER BY run_id, row_key, action_index",
            (run_id,) if run_id is not None else ()).fetchall()
    return [JournalItem(str(r[0]), str(r[1]), int(r[2]), str(r[3]), str(r[4]), str(r[5]),
                        float(r[6]), None if r[7] is None else int(r[7])) for r in rows]


def read_lanes(url: str, run_id: str | None = None) -> list[Lane]:
    """The journal's lanes (none before the journal has the table)."""
    with psycopg.connect(url, connect_timeout=5) as conn:
        if not _columns(conn, "lanes"):
            return []
        where = "WHERE run_id = %s" if run_id is not None else ""
        rows = conn.execute(
            f"SELECT run_id, account_id, site, state, owner, fence, lease_until FROM lanes "
            f"{where} ORDER BY run_id, account_id", (run_id,) if run_id is not None else ()
        ).fetchall()
    return [Lane(str(r[0]), str(r[1]), str(r[2]), str(r[3]),
                 None if r[4] is None else str(r[4]), int(r[5]), r[6]) for r in rows]


async def fetch_arrivals(sandbox_url: str) -> tuple[list[JiraArrival], list[MintArrival]]:
    """Both arrival logs of a sandbox served by another process (``GET /_sandbox/arrivals``;
    it must have ``record_arrivals = true``)."""
    async with aiohttp.ClientSession() as http, \
            http.get(sandbox_url + "/_sandbox/arrivals") as resp:
        body = await resp.json()
        if resp.status != 200:
            raise AssertionError(f"{sandbox_url}/_sandbox/arrivals: {resp.status} {body}")
    return ([jira_from_json(a) for a in body["jira"]],
            [mint_from_json(m) for m in body["mints"]])
