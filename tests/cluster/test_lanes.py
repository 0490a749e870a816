"""Lanes on the real PostgreSQL: one holder at a time, fences that refuse a stale writer,
renewals that tell a worker it lost a lane, and claims in weighted fair order."""

from __future__ import annotations

import functools
from collections import Counter

import psycopg
import pytest

from runner.errors import LaneLostError
from runner.journal import ItemRef, ItemState, PostgresJournal
from runner.journal import pglanes as lanes


async def _run_with_lanes(journal: PostgresJournal, name: str, users: int, rows_each: int = 1,
                          weight: float = 1.0) -> str:
    handle = await journal.open_run(name, f"/jobs/{name}.toml", "fp", "cfg", "text")
    run_id = handle.run_id
    await journal.write(functools.partial(lanes.set_lanes, run_id=run_id,
                                          columns=("account_id",)))
    await journal.write(functools.partial(lanes.add_flows, run_id=run_id,
                                          weights={"acme": weight}))
    batch = [(f"{name}-{u}-{r}", u * rows_each + r, "acme", f"acct-{u:03d}", 0,
              {"account_id": f"acct-{u:03d}"})
             for u in range(users) for r in range(rows_each)]
    await journal.write(functools.partial(lanes.load_rows, run_id=run_id, rows=batch))
    await journal.write(functools.partial(lanes.set_loaded, run_id=run_id))
    return run_id


def _lapse(url: str, run_id: str) -> None:
    """Ends every lease of the run, as time passing would (the server started long ago)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE lanes SET lease_until = now() - interval '1 second', "
                     "lease_s = 0 WHERE run_id = %s", (run_id,))


async def test_a_lane_is_held_by_one_worker_until_its_lease_lapses(pg_url: str) -> None:
    """Two workers claiming together get disjoint lanes; a live lease is never claimed by the
    other; once it lapsed, the other gets it under the next fence."""
    async with PostgresJournal(pg_url) as journal:
        run_id = await _run_with_lanes(journal, "one", users=6)
        claim = functools.partial(lanes.claim, run_ids=[run_id], lease_s=60.0)
        a = await journal.execute(functools.partial(claim, worker_id="A", n=4))
        b = await journal.execute(functools.partial(claim, worker_id="B", n=4))
        assert len(a) == 4 and len(b) == 2
        assert not {g.lane for g in a} & {g.lane for g in b}
        assert await journal.execute(functools.partial(claim, worker_id="B", n=4)) == []
        _lapse(pg_url, run_id)
        again = await journal.execute(functools.partial(claim, worker_id="B", n=10))
        assert {g.lane for g in again} == {g.lane for g in a} | {g.lane for g in b}
        fences = {g.lane: g.fence for g in again}
        assert all(fences[g.lane] == g.fence + 1 for g in a + b)


async def test_a_stale_fence_writes_nothing_and_the_holder_writes(pg_url: str) -> None:
    """After a takeover, the old holder's mark is refused with LaneLostError and changes no row;
    the new holder's mark under its fence is journaled with that fence."""
    async with PostgresJournal(pg_url) as journal:
        run_id = await _run_with_lanes(journal, "fence", users=1)
        (old,) = await journal.execute(functools.partial(
            lanes.claim, worker_id="A", run_ids=[run_id], n=1, lease_s=60.0))
        holders = {"owner": ("A", old.fence)}
        journal.join(run_id, lambda r, s, a: holders["owner"])
        item = ItemRef("fence-0-0", 0, "acme", old.account_id, "comment.add")
        await journal.mark_started(run_id, item)
        _lapse(pg_url, run_id)
        (new,) = await journal.execute(functools.partial(
            lanes.claim, worker_id="B", run_ids=[run_id], n=1, lease_s=60.0))
        assert new.fence == old.fence + 1
        with pytest.raises(LaneLostError):
            await journal.mark_done(run_id, item, {"id": "stale"})
        assert (await journal.states(run_id, ["fence-0-0"]))["fence-0-0#0"].state \
            is ItemState.STARTED
        holders["owner"] = ("B", new.fence)
        await journal.mark_done(run_id, item, {"id": "10001"})
        with psycopg.connect(pg_url, autocommit=True) as conn:
            row = conn.execute("SELECT state, fence, result FROM items WHERE run_id = %s",
                               (run_id,)).fetchone()
        assert row is not None and row[0] == "done" and row[1] == new.fence
        assert "10001" in str(row[2])


async def test_a_renewal_leaves_out_a_lane_taken_over(pg_url: str) -> None:
    """The old holder's renewal answers only the lanes it still holds."""
    async with PostgresJournal(pg_url) as journal:
        run_id = await _run_with_lanes(journal, "renew", users=2)
        got = await journal.execute(functools.partial(
            lanes.claim, worker_id="A", run_ids=[run_id], n=2, lease_s=60.0))
        first = got[0]
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("UPDATE lanes SET lease_until = now() - interval '1 second', "
                         "lease_s = 0 WHERE account_id = %s", (first.account_id,))
        await journal.execute(functools.partial(
            lanes.claim, worker_id="B", run_ids=[run_id], n=1, lease_s=60.0))
        held = [(g.lane, g.fence) for g in got]
        answer = await journal.execute(functools.partial(lanes.renew, worker_id="A", held=held))
        assert [lane for lane, _, _ in answer] == [got[1].lane]
        assert all(50 < left <= 60 for _, _, left in answer)


async def test_a_renewal_extends_only_the_lanes_it_names(pg_url: str) -> None:
    """A lane held in the worker's name that its renewal does not name (a claim whose answer
    the connection lost) is not extended: it lapses, and another worker claims it under the
    next fence; the lane named is extended."""
    async with PostgresJournal(pg_url) as journal:
        run_id = await _run_with_lanes(journal, "orphan", users=2)
        known, orphan = await journal.execute(functools.partial(
            lanes.claim, worker_id="A", run_ids=[run_id], n=2, lease_s=60.0))
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("UPDATE lanes SET lease_until = now() + interval '1 second' "
                         "WHERE run_id = %s", (run_id,))
        answer = await journal.execute(functools.partial(
            lanes.renew, worker_id="A", held=[(known.lane, known.fence)]))
        assert [(lane, fence) for lane, fence, _ in answer] == [(known.lane, known.fence)]
        with psycopg.connect(pg_url, autocommit=True) as conn:
            left: dict[str, float] = dict(conn.execute(
                "SELECT account_id, extract(epoch FROM lease_until - now()) FROM lanes "
                "WHERE run_id = %s", (run_id,)).fetchall())
        assert left[orphan.account_id] <= 1.0 and 50 < left[known.account_id] <= 60
        _lapse(pg_url, run_id)
        # Both lapsed now (the helper ends every lease): B's claim takes the orphan too.
        taken = await journal.execute(functools.partial(
            lanes.claim, worker_id="B", run_ids=[run_id], n=2, lease_s=60.0))
        assert {g.lane: g.fence for g in taken}[orphan.lane] == orphan.fence + 1


async def test_a_lane_with_rows_added_since_it_was_read_is_not_done(pg_url: str) -> None:
    """finish_lane says "more" while rows were added after its owner read them, "last" once it
    names them all (the run's only lane), and "lost" for a worker that does not hold it."""
    async with PostgresJournal(pg_url) as journal:
        run_id = await _run_with_lanes(journal, "more", users=1, rows_each=2)
        (grant,) = await journal.execute(functools.partial(
            lanes.claim, worker_id="A", run_ids=[run_id], n=1, lease_s=60.0))
        assert grant.rows == 2
        await journal.write(functools.partial(lanes.load_rows, run_id=run_id, rows=[
            ("more-0-9", 99, "acme", grant.account_id, 0, {"account_id": grant.account_id})]))
        finish = functools.partial(lanes.finish_lane, lane=grant.lane, fence=grant.fence)
        assert await journal.write(functools.partial(finish, worker_id="B", rows=3)) == "lost"
        assert await journal.write(functools.partial(finish, worker_id="A", rows=2)) == "more"
        rows = await journal.execute(functools.partial(lanes.lane_rows, lane=grant.lane))
        assert [r.row_key for r in rows] == ["more-0-0", "more-0-1", "more-0-9"]
        assert await journal.write(functools.partial(finish, worker_id="A", rows=3)) == "last"
        assert await journal.execute(functools.partial(
            lanes.finish_if_complete, run_id=run_id, now=0.0))


async def test_claims_follow_the_runs_weights(pg_url: str) -> None:
    """Two runs, one of weight 3 and one of weight 1, claimed a lane at a time: of the first 40
    grants about three in four go to the heavier run, and the lighter one is never starved."""
    async with PostgresJournal(pg_url) as journal:
        heavy = await _run_with_lanes(journal, "heavy", users=60, weight=3.0)
        light = await _run_with_lanes(journal, "light", users=60, weight=1.0)
        order = []
        for _ in range(40):
            (g,) = await journal.execute(functools.partial(
                lanes.claim, worker_id="A", run_ids=[heavy, light], n=1, lease_s=60.0))
            order.append(g.run_id)
        counts = Counter(order)
        assert counts[heavy] == 30 and counts[light] == 10
        assert light in order[:4]
