"""The budget store on SQLite and on PostgreSQL: the same tests against both backends, each
``store`` a connection of its own as a separate process would hold."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from runner.budgets.sharedmint import Background, SharedMintBucket
from runner.budgets.store import BudgetStore, connect, is_url
from runner.budgets.store.calls import (
    PRUNE_ROWS,
    BurstTerms,
    CallKeys,
    QuotaNews,
    QuotaTerms,
    call_give_back,
    call_take,
    cut_burst,
    learn_issue_interval,
    quota_news,
)
from runner.budgets.store.mints import mint_take
from runner.budgets.store.programs import Gen, Stmt, mint_answered, pause

Opener = Callable[[], Any]


@pytest.fixture(params=["sqlite", "postgres"])
async def stores(request: pytest.FixtureRequest, tmp_path: Path
                 ) -> AsyncIterator[Callable[[], Any]]:
    """Opens stores on one database: an SQLite file, or a PostgreSQL database of the test's."""
    location: str | Path = (tmp_path / "journal.db" if request.param == "sqlite"
                            else request.getfixturevalue("pg_url"))
    async with AsyncExitStack() as stack:
        async def open_one() -> BudgetStore:
            store = await connect(location)
            stack.push_async_callback(store.close)
            return store
        yield open_one


def _row(sql: str, **params: Any) -> Callable[[float], Gen[Any]]:
    def program(now: float) -> Gen[Any]:
        return (yield Stmt(sql, params))
    return program


BURST = BurstTerms(rate=100.0, capacity_s=0.5, regrow_per_s=1.0, min_rate=1.0, cut_hold_s=1.0)
KEYS = CallKeys(("burst:acme:GET /x", "quota:global", "quota:acme:tenant", "site:acme"),
                "burst:acme:GET /x", "quota:global", "quota:acme:tenant")


def test_the_journal_setting_picks_the_backend() -> None:
    """A postgresql:// or postgres:// URL is PostgreSQL; anything else is an SQLite path."""
    assert is_url("postgresql://u@h/db") and is_url("postgres://h/db")
    assert not is_url("forge-runner.db") and not is_url(Path("/tmp/postgresql.db"))


async def test_a_mint_start_is_spaced_for_every_process(stores: Opener) -> None:
    """A second process's mint right after the first's waits out the interval."""
    a, b = await stores(), await stores()
    assert (await a.run(mint_take("mint:dev", 10.0, 0.0, 100, 60.0, 30.0))).grant.ok
    refused = (await b.run(mint_take("mint:dev", 10.0, 0.0, 100, 60.0, 30.0))).grant
    assert not refused.ok and 9.0 < refused.wait_s <= 10.0
    assert refused.scope == "mint:dev" and not refused.paused


async def test_no_start_leaves_within_a_window_of_the_answer_limit_starts_back(
        stores: Opener) -> None:
    """With 2 per 10 s, a third start waits for the first one's answer and then a whole
    window after it, whichever process asks; before that answer it looks again soon."""
    a, b = await stores(), await stores()
    take = mint_take("mint:dev", 1e-6, 0.0, 2, 10.0, 30.0)
    first = await a.run(take)
    assert first.grant.ok and (await b.run(take)).grant.ok
    unanswered = (await b.run(take)).grant
    assert not unanswered.ok and unanswered.wait_s <= 0.01
    await a.run(mint_answered("mint:dev", first.seq, 0.0))
    after = (await b.run(take)).grant
    assert not after.ok and 9.0 < after.wait_s <= 10.0


async def test_one_process_pause_holds_every_process(stores: Opener) -> None:
    """A pause stored by one process refuses the other's takes until it ends; a shorter
    pause does not shorten it."""
    a, b = await stores(), await stores()
    assert await a.run(pause("mint:dev", 30.0, "mint rate limited"))
    assert not await b.run(pause("mint:dev", 5.0, "shorter"))
    refused = (await b.run(mint_take("mint:dev", 0.01, 0.0, 100, 60.0, 30.0))).grant
    assert refused.paused and refused.reason == "mint rate limited"
    assert 29.0 < refused.wait_s <= 30.0


async def test_no_two_processes_spend_the_same_point(stores: Opener) -> None:
    """Sixteen takers on four connections race for a 50-point quota: exactly 50 are granted."""
    conns = [await stores() for _ in range(4)]
    terms = QuotaTerms(points=50, window_s=3600.0, margin=0.0, burst=1.0)
    granted = 0

    async def taker(store: BudgetStore) -> None:
        nonlocal granted
        burst = BurstTerms(1e6, 1e3, 1.0, 1.0, 1.0)
        while (grant := await store.run(call_take(KEYS, 1.0, burst, terms))).ok:
            granted += 1
        assert grant.reason == "quota spent"

    await asyncio.gather(*(taker(conns[i % 4]) for i in range(16)))
    assert granted == 50


async def test_a_refused_request_takes_nothing(stores: Opener) -> None:
    """Refused by the quota, a request leaves its burst key as it was (all or none)."""
    store = await stores()
    terms = QuotaTerms(points=1, window_s=3600.0, margin=0.0, burst=1.0)
    assert (await store.run(call_take(KEYS, 1.0, BURST, terms))).ok
    tat = await store.run(_row("SELECT tat FROM budget_gcra WHERE key = :k", k=KEYS.burst))
    refused = await store.run(call_take(KEYS, 1.0, BURST, terms))
    assert not refused.ok and refused.scope == "quota:global"
    assert await store.run(_row("SELECT tat FROM budget_gcra WHERE key = :k",
                                k=KEYS.burst)) == tat


async def test_a_write_refused_by_its_last_budget_spends_none_of_the_others(
        stores: Opener) -> None:
    """A write that the app quota refuses leaves its issue's arrival time and log, its burst
    key and the tenant quota as they were: the refusal comes last, after all of them took."""
    store = await stores()
    terms = QuotaTerms(points=1, window_s=3600.0, margin=0.0, burst=1.0)
    await store.run(quota_news(QuotaNews("quota:acme:tenant", points=100, window_s=3600.0),
                               terms, make=True))
    write = CallKeys(KEYS.held, KEYS.burst, KEYS.app_quota, KEYS.tenant_quota,
                     "issue:acme:MIG-3", "issuerate:acme", 0.0, ((20, 2.0),))
    assert (await store.run(call_take(write, 1.0, BURST, terms))).ok
    state = _row("SELECT (SELECT tat FROM budget_gcra WHERE key = :i), (SELECT tat FROM"
                 " budget_gcra WHERE key = :b), (SELECT COUNT(*) FROM budget_issue_log),"
                 " (SELECT used FROM budget_quota WHERE scope = :t)",
                 i=write.issue, b=KEYS.burst, t=KEYS.tenant_quota)
    before = await store.run(state)
    refused = await store.run(call_take(write, 1.0, BURST, terms))
    assert not refused.ok and refused.scope == "quota:global", refused
    assert await store.run(state) == before and before[2:] == (1, 1.0)


async def test_a_write_prunes_a_bounded_number_of_any_issues_old_log_entries(
        stores: Opener) -> None:
    """Entries other issues left in the log longer than the longest window ago go, at most
    ``PRUNE_ROWS`` per write; recent ones stay, so no window loses a write it counts."""
    store = await stores()
    for n in range(PRUNE_ROWS + 3):
        await store.run(_row("INSERT INTO budget_issue_log(key, t) VALUES (:k, :t)",
                             k=f"issue:acme:OLD-{n}", t=1000.0 + n))
    terms = QuotaTerms(points=1000, window_s=3600.0, margin=0.0, burst=1.0)
    write = CallKeys(KEYS.held, KEYS.burst, KEYS.app_quota, KEYS.tenant_quota,
                     "issue:acme:MIG-4", "issuerate:acme", 0.0, ((20, 2.0), (100, 30.0)))
    count = _row("SELECT COUNT(*) FROM budget_issue_log WHERE key <> :k", k=write.issue)
    assert (await store.run(call_take(write, 1.0, BURST, terms))).ok
    assert await store.run(count) == (3,)
    assert (await store.run(call_take(write, 1.0, BURST, terms))).ok
    assert await store.run(count) == (0,)
    assert await store.run(_row("SELECT COUNT(*) FROM budget_issue_log WHERE key = :k",
                                k=write.issue)) == (2,)


async def test_jira_policy_resizes_the_quota_for_everyone(stores: Opener) -> None:
    """RateLimit-Policy's q and w, stored by one process, are the quota another paces by."""
    a, b = await stores(), await stores()
    terms = QuotaTerms(points=1000, window_s=3600.0, margin=0.0, burst=1.0)
    assert (await a.run(call_take(KEYS, 1.0, BURST, terms))).ok
    await a.run(quota_news(QuotaNews("quota:global", points=3, window_s=60.0), terms,
                           make=False))
    assert await b.run(_row("SELECT points, window_s FROM budget_quota WHERE scope = :s",
                            s="quota:global")) == (3, 60)
    assert (await b.run(call_take(KEYS, 1.0, BURST, terms))).ok
    assert (await b.run(call_take(KEYS, 1.0, BURST, terms))).ok
    refused = await b.run(call_take(KEYS, 1.0, BURST, terms))
    assert refused.reason == "quota spent" and refused.wait_s <= 60.0


async def test_a_stored_quota_larger_than_the_config_is_held_to_the_config(
        stores: Opener) -> None:
    """A quota row larger than this process's config (an earlier config's, or a policy Jira
    showed larger) is spent only up to the configured size: Jira's policy tightens the quota,
    never loosens it, and a lowered quota_points takes effect at once."""
    store = await stores()
    earlier = QuotaTerms(points=1000, window_s=3600.0, margin=0.0, burst=1.0)
    assert (await store.run(call_take(KEYS, 1.0, BURST, earlier))).ok
    await store.run(quota_news(QuotaNews("quota:global", points=5000), earlier, make=False))
    today = QuotaTerms(points=3, window_s=3600.0, margin=0.0, burst=1.0)
    assert (await store.run(call_take(KEYS, 1.0, BURST, today))).ok
    assert (await store.run(call_take(KEYS, 1.0, BURST, today))).ok
    refused = await store.run(call_take(KEYS, 1.0, BURST, today))
    assert not refused.ok and refused.reason == "quota spent" and refused.wait_s <= 3600.0


async def test_a_quota_429_spends_what_is_left_until_the_reset(stores: Opener) -> None:
    """After a quota 429 no process takes a point until the reset Jira named."""
    a, b = await stores(), await stores()
    terms = QuotaTerms(points=1000, window_s=3600.0, margin=0.0, burst=1.0)
    assert (await a.run(call_take(KEYS, 1.0, BURST, terms))).ok
    await a.run(quota_news(QuotaNews("quota:global", reset_in_s=20.0, exhausted=True), terms,
                           make=False))
    refused = await b.run(call_take(KEYS, 1.0, BURST, terms))
    assert refused.reason == "quota spent" and refused.wait_s > 0


async def test_a_tenant_quota_exists_once_jira_shows_it(stores: Opener) -> None:
    """Without a stored tenant quota requests take from the app's only; once Jira has shown
    the tenant's (a 429 or RateLimit), every process takes from it too."""
    a, b = await stores(), await stores()
    terms = QuotaTerms(points=1000, window_s=3600.0, margin=0.0, burst=1.0)
    assert (await a.run(call_take(KEYS, 1.0, BURST, terms))).ok
    assert await a.run(_row("SELECT used FROM budget_quota WHERE scope = :s",
                            s="quota:acme:tenant")) is None
    await a.run(quota_news(QuotaNews("quota:acme:tenant", points=1, window_s=3600.0), terms,
                           make=True))
    assert (await b.run(call_take(KEYS, 1.0, BURST, terms))).ok
    refused = await b.run(call_take(KEYS, 1.0, BURST, terms))
    assert refused.scope == "quota:acme:tenant" and refused.reason == "quota spent"


async def test_a_burst_cut_slows_the_key_for_everyone_once_per_hold(stores: Opener) -> None:
    """A burst 429 halves the key's rate once (a second within the hold changes nothing),
    and empties its bucket for every process."""
    a, b = await stores(), await stores()
    slow = BurstTerms(rate=2.0, capacity_s=0.5, regrow_per_s=0.0, min_rate=0.5, cut_hold_s=60.0)
    assert await a.run(cut_burst(KEYS.burst, slow)) == 1.0
    assert await b.run(cut_burst(KEYS.burst, slow)) is None
    terms = QuotaTerms(points=1000, window_s=3600.0, margin=0.0, burst=1.0)
    refused = await b.run(call_take(KEYS, 1.0, slow, terms))
    assert refused.scope == KEYS.burst and 0.5 < refused.wait_s <= 1.0


async def test_a_learned_per_issue_spacing_holds_every_issue_of_the_site(stores: Opener
                                                                        ) -> None:
    """Jira's tighter per-issue limit, learned once, spaces writes to any issue of the site,
    for every process; a looser one changes nothing."""
    a, b = await stores(), await stores()
    assert await a.run(learn_issue_interval("issuerate:acme", 4.0))
    assert not await b.run(learn_issue_interval("issuerate:acme", 1.0))
    terms = QuotaTerms(points=1000, window_s=3600.0, margin=0.0, burst=1.0)
    write = CallKeys(KEYS.held, KEYS.burst, KEYS.app_quota, KEYS.tenant_quota,
                     "issue:acme:MIG-9", "issuerate:acme", 0.3)
    assert (await a.run(call_take(write, 1.0, BURST, terms))).ok
    refused = await b.run(call_take(write, 1.0, BURST, terms))
    assert refused.scope == "issue:acme:MIG-9" and 3.5 < refused.wait_s <= 4.0


async def test_per_issue_windows_take_a_burst_then_hold_for_every_process(stores: Opener
                                                                        ) -> None:
    """At most 3 writes to one issue in any 10 s: two processes together get three at once
    (a burst, as Jira's windows allow), the fourth waits until the first leaves the window;
    another issue is not held; a write given back frees its place."""
    a, b = await stores(), await stores()
    terms = QuotaTerms(points=1000, window_s=3600.0, margin=0.0, burst=1.0)
    write = CallKeys(KEYS.held, KEYS.burst, KEYS.app_quota, KEYS.tenant_quota,
                     "issue:acme:MIG-1", "issuerate:acme", 0.0, ((3, 10.0),))
    assert [(await s.run(call_take(write, 1.0, BURST, terms))).ok for s in (a, b, a)] == [
        True, True, True]
    refused = await b.run(call_take(write, 1.0, BURST, terms))
    assert refused.scope == "issue:acme:MIG-1" and 9.0 < refused.wait_s <= 10.0
    other = dataclasses.replace(write, issue="issue:acme:MIG-2")
    assert (await b.run(call_take(other, 1.0, BURST, terms))).ok
    await a.run(call_give_back(write, 1.0, BURST, terms))
    assert (await b.run(call_take(write, 1.0, BURST, terms))).ok


async def test_a_mint_answer_is_never_stored_earlier_than_it_came(stores: Opener) -> None:
    """Every mint start's answer is stored no earlier than it came back, on the database's
    clock, while the event loop is busy between the store's clock read and the write (the
    window guard counts a window from it: an answer stored early let a sliding window hold
    101 mints)."""
    store = await stores()
    writes = Background()
    bucket = SharedMintBucket("dev", 10_000, 1.0, store, answer_limit_s=30.0,
                              background=writes)
    busy = True

    def hog() -> None:
        # A loop kept busy by other work: 10 ms of it at every turn.
        time.sleep(0.01)
        if busy:
            asyncio.get_running_loop().call_soon(hog)

    asyncio.get_running_loop().call_soon(hog)
    came: list[float] = []
    try:
        for _ in range(40):
            async with bucket.slot():
                came.append(time.time())
    finally:
        busy = False
    await writes.settle()
    # A fresh bucket's starts are seqs 1, 2, ... in the order they were taken.
    stored = [await store.run(_row("SELECT answered FROM budget_mint_log WHERE key = :key"
                                   " AND seq = :seq", key=bucket.scope, seq=seq))
              for seq in range(1, len(came) + 1)]
    early = [(seq, round(at - float(row[0]), 4))
             for seq, (row, at) in enumerate(zip(stored, came, strict=True), start=1)
             if row is None or row[0] is None or float(row[0]) < at - 1e-3]
    assert early == []


# -- the share of the quota kept for serve's runs -----------------------------------------------
RESERVED = QuotaTerms(points=100, window_s=3600.0, margin=0.02, burst=1.0, reserve=0.3)
SERVE = dataclasses.replace(RESERVED, serve=True)


async def _take_all(store: BudgetStore, terms: QuotaTerms) -> tuple[int, str]:
    """One-point takes until one is refused: how many were granted, and why the last wasn't."""
    granted = 0
    while (grant := await store.run(call_take(KEYS, 1.0, BURST_FREE, terms))).ok:
        granted += 1
    return granted, grant.reason


BURST_FREE = BurstTerms(1e6, 1e3, 1.0, 1.0, 1.0)


async def test_runs_other_than_serves_leave_the_reserve_unspent(stores: Opener) -> None:
    """With 30% kept for serve and a 2% margin, a migration's takes stop at 68 of 100 points
    (quota spent, until the reset); serve's, on another connection, go on to 98."""
    migration, serve = await stores(), await stores()
    assert await _take_all(migration, RESERVED) == (68, "quota spent")
    assert await _take_all(serve, SERVE) == (30, "quota spent")
    assert await migration.run(_row("SELECT used FROM budget_quota WHERE scope = :s",
                                    s="quota:global")) == (98,)


async def test_serve_spends_from_the_same_count_as_everyone(stores: Opener) -> None:
    """Points serve spent first count against the migration's share too (one count of points
    used): after serve's 20, a migration gets 48 more, not 68."""
    migration, serve = await stores(), await stores()
    for _ in range(20):
        assert (await serve.run(call_take(KEYS, 1.0, BURST_FREE, SERVE))).ok
    assert await _take_all(migration, RESERVED) == (48, "quota spent")


async def test_a_migration_ahead_on_its_clock_does_not_hold_serve_back(stores: Opener) -> None:
    """Paced with no burst, a migration's takes are refused for pacing once its clock is ahead;
    serve's takes pace by a clock of their own, so they go at once (with one clock they would
    wait for the migration's spacing), and then are paced in turn."""
    migration, serve = await stores(), await stores()
    # Windows are aligned to the epoch, and the spacing is the time left in the window over
    # the points left: an hour's window read near the top of the hour spaces takes closely.
    # A window of 10^7 s (its end at least 680 s away but for 0.007% of the time) keeps the
    # spacing seconds long whenever the test runs.
    paced = dataclasses.replace(RESERVED, points=1000, burst=0.0, window_s=1e7)
    assert await _take_all(migration, paced) == (2, "pacing")
    refused = await migration.run(call_take(KEYS, 1.0, BURST_FREE, paced))
    assert refused.wait_s > 1.0  # days spread over 680 points: seconds apart
    assert await _take_all(serve, dataclasses.replace(paced, serve=True)) == (2, "pacing")


async def test_a_new_window_restarts_both_clocks(stores: Opener) -> None:
    """A window that ended leaves neither clock ahead: a serve clock left far in the future
    in the old window holds nothing back once a migration's take has rolled the row."""
    migration, serve = await stores(), await stores()
    paced = dataclasses.replace(RESERVED, points=1000, burst=0.0)
    assert (await serve.run(call_take(KEYS, 1.0, BURST_FREE, dataclasses.replace(
        paced, serve=True)))).ok
    await serve.run(_row("UPDATE budget_quota SET serve_tat = :far, reset_at = :past"
                         " WHERE scope = :s RETURNING 1", far=time.time() + 1e6,
                         past=time.time() - 1.0, s="quota:global"))
    assert (await migration.run(call_take(KEYS, 1.0, BURST_FREE, paced))).ok
    serve_tat, reset_at = await serve.run(_row(
        "SELECT serve_tat, reset_at FROM budget_quota WHERE scope = :s", s="quota:global"))
    assert serve_tat <= time.time() + 1.0 and reset_at > time.time()
    assert (await serve.run(call_take(KEYS, 1.0, BURST_FREE, dataclasses.replace(
        paced, serve=True)))).ok


async def test_a_give_back_returns_the_point_to_its_own_clock(stores: Opener) -> None:
    """A serve request taken but not sent gives its point back and moves serve's clock back,
    leaving the migration's clock where it was."""
    store = await stores()
    paced = dataclasses.replace(RESERVED, points=1000, burst=0.0, serve=True)
    assert (await store.run(call_take(KEYS, 1.0, BURST_FREE, paced))).ok
    before = await store.run(_row("SELECT used, tat, serve_tat FROM budget_quota"
                                  " WHERE scope = :s", s="quota:global"))
    await store.run(call_give_back(KEYS, 1.0, BURST_FREE, paced))
    used, tat, serve_tat = await store.run(_row("SELECT used, tat, serve_tat FROM budget_quota"
                                                " WHERE scope = :s", s="quota:global"))
    assert used == before[0] - 1 and tat == before[1] and serve_tat < before[2]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_a_store_made_before_serves_clock_gains_it(backend: str, tmp_path: Path,
                                                         request: pytest.FixtureRequest) -> None:
    """A budget_quota table an earlier version made (no serve_tat) gets the column when a
    store opens on it, its rows kept: their points used still count."""
    old = ("CREATE TABLE budget_quota (scope TEXT PRIMARY KEY, points DOUBLE PRECISION NOT NULL,"
           " window_s DOUBLE PRECISION NOT NULL, reset_at DOUBLE PRECISION NOT NULL, used"
           " DOUBLE PRECISION NOT NULL, tat DOUBLE PRECISION NOT NULL)")
    row = ("INSERT INTO budget_quota VALUES ('quota:global', 100, 3600, "
           f"{(time.time() // 3600 + 1) * 3600}, 60, {time.time()})")
    location: str | Path
    if backend == "sqlite":
        import sqlite3

        location = tmp_path / "journal.db"
        with sqlite3.connect(location) as conn:
            conn.execute(old)
            conn.execute(row)
    else:
        import psycopg

        url: str = request.getfixturevalue("pg_url")
        location = url
        with psycopg.connect(url, autocommit=True) as pg:
            pg.execute(old)
            pg.execute(row)
    store = await connect(location)
    try:
        assert await _take_all(store, RESERVED) == (8, "quota spent")
        assert await _take_all(store, SERVE) == (30, "quota spent")
    finally:
        await store.close()
