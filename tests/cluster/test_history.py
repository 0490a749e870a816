"""The checker's journal readers on the real PostgreSQL: items with and without a fence column,
and the lanes table the leased workers keep (made here by hand, as the brief describes it)."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg

from tests.cluster.checker import JournalItem
from tests.cluster.history import Lane, read_items, read_lanes

ITEMS = """CREATE TABLE items (
    run_id text, row_key text, action_index integer, action text, state text, attempts integer,
    site text, account_id text, updated_at double precision{fence})"""
LANES = """CREATE TABLE lanes (
    run_id text, account_id text, site text, state text, owner text, fence bigint,
    lease_until timestamptz)"""


def make(url: str, *, fence: bool) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(ITEMS.format(fence=", fence bigint" if fence else ""))
        values = ("r-1", "L2", 0, "comment.add", "done", 1, "acme", "acc", 12.5)
        if fence:
            conn.execute("INSERT INTO items VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 3)",
                         values)
        else:
            conn.execute("INSERT INTO items VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)", values)
        conn.execute("INSERT INTO items (run_id, row_key, action_index, action, state, "
                     "attempts, site, account_id, updated_at) VALUES "
                     "('r-2', 'L1', 1, 'issue.property.set', 'started', 1, 'acme', 'b', 1)")


def test_items_are_read_with_their_fence_or_none_before_the_column_exists(pg_url: str) -> None:
    """With a fence column each item carries it; without, it reads as None; one run's items
    can be asked for alone."""
    make(pg_url, fence=True)
    assert read_items(pg_url, "r-1") == [
        JournalItem("r-1", "L2", 0, "comment.add", "done", "acc", 12.5, fence=3)]
    assert [it.fence for it in read_items(pg_url)] == [3, None]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DROP TABLE items")
    make(pg_url, fence=False)
    assert [(it.item, it.fence) for it in read_items(pg_url)] == [("L2#0", None), ("L1#1", None)]


def test_lanes_are_read_and_a_journal_without_the_table_has_none(pg_url: str) -> None:
    """No lanes table: no lanes; with one, each lane's owner, fence and lease end come back."""
    assert read_lanes(pg_url) == []
    until = datetime(2026, 12, 3, 18, 0, tzinfo=UTC)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(LANES)
        conn.execute("INSERT INTO lanes VALUES ('r-1', 'acc', 'acme', 'leased', 'w-1', 4, %s),"
                     " ('r-1', 'bcc', 'acme', 'ready', NULL, 0, NULL)", (until,))
    assert read_lanes(pg_url, "r-1") == [
        Lane("r-1", "acc", "acme", "leased", "w-1", 4, until),
        Lane("r-1", "bcc", "acme", "ready", None, 0, None)]
