"""Several real worker processes on one run, on the machine's PostgreSQL and the sandbox: a
worker killed mid-run has its lanes finished by the others, with nothing lost or repeated and
each user's items in order; a drained worker gives its lanes back at once."""

from __future__ import annotations

import asyncio
import functools
import itertools
import os
import random
import re
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest

from runner.sandbox.app import RunningSandbox, serve
from runner.sandbox.testing import CLOUD_A
from tests.e2e.harness import (
    ArrivalWatch,
    Process,
    Rehearsal,
    account,
    bulk_sandbox_config,
    comments_by_item,
    run_id_of,
)

USERS = 120
ROWS = 360
ISSUES = 40
LEASE_S = 4.0
ACTIONS = """\
[[actions]]
type = "comment.add"
issue = "{issue}"
body = "Migrated {legacy_id}"

[[actions]]
type = "issue.property.set"
issue = "{issue}"
key = "legacy-{legacy_id}"
value = { id = "{legacy_id}" }
"""

pytestmark = pytest.mark.slow


def _rows() -> list[dict[str, str]]:
    return [{"legacy_id": f"LEG-{n:04d}", "account_id": account(n % USERS),
             "issue": f"MIG-{n % ISSUES + 1}"} for n in range(ROWS)]


@pytest.fixture
async def sandbox() -> AsyncIterator[RunningSandbox]:
    async with serve(bulk_sandbox_config(ISSUES), port=0) as running:
        yield running


@pytest.fixture
def rehearsal(tmp_path: Path, sandbox: RunningSandbox, pg_url: str) -> Rehearsal:
    rehearsal = Rehearsal.start(tmp_path, sandbox, journal_url=pg_url, concurrency=8)
    text = rehearsal.config_path.read_text()
    # A short lease, so a takeover happens within the test; a request must fit in half of it.
    text = text.replace("request_timeout_s = 30.0", "request_timeout_s = 2.0")
    rehearsal.config_path.write_text(text + f"\n[cluster]\nlease_s = {LEASE_S}\npoll_s = 0.2\n")
    return rehearsal


def _journal(url: str, run_id: str) -> tuple[dict[str, str], dict[str, int]]:
    """Items by state, and the fence of each lane, as the journal holds them."""
    with psycopg.connect(url, autocommit=True) as conn:
        states: dict[str, str] = dict(conn.execute(
            "SELECT row_key || '#' || action_index, state FROM items WHERE run_id = %s",
            (run_id,)).fetchall())
        fences: dict[str, int] = dict(conn.execute(
            "SELECT account_id, fence FROM lanes WHERE run_id = %s", (run_id,)).fetchall())
    return states, fences


def _assert_once_and_in_order(rehearsal: Rehearsal, rows: list[dict[str, str]],
                              states: dict[str, str]) -> None:
    assert len(states) == 2 * len(rows)
    assert {s for s in states.values()} == {"done"}, states
    comments = comments_by_item(rehearsal.jira)
    assert {k: n for k, n in comments.items() if n != 1} == {}
    assert set(comments) == {f"{r['legacy_id']}#0" for r in rows}
    # Each user's comments were made in the order of the user's rows (comment IDs grow).
    made: dict[str, list[tuple[int, int]]] = {}
    for issue in rehearsal.jira.site(CLOUD_A).issues.values():
        for comment in issue.comments:
            item = comment.properties.get("forge-runner.item", {}).get("item", "")
            made.setdefault(comment.author, []).append((int(item[4:8]), int(comment.id)))
    inversions = 0
    for seq in made.values():
        ids = [cid for _, cid in sorted(seq)]
        inversions += sum(1 for a, b in itertools.pairwise(ids) if b < a)
    assert inversions == 0


async def test_a_killed_worker_s_lanes_are_finished_by_the_others(
    rehearsal: Rehearsal, pg_url: str,
) -> None:
    """`run` and two `worker`s share a run of 720 items; one worker is SIGKILLed at a seeded
    write: the run still ends with `run` exit 0, every comment made once, each user's comments
    in row order, and the killed worker's lanes taken over under a higher fence."""
    rows = _rows()
    job = rehearsal.write_job("shared", rows, ACTIONS)
    seed = int(os.environ.get("FORGE_RUNNER_E2E_SEED") or random.SystemRandom().randrange(2**32))
    moment = random.Random(seed).randrange(60, 240)
    print(f"SIGKILL at write {moment} (FORGE_RUNNER_E2E_SEED={seed})")
    watch = ArrivalWatch.install(rehearsal.sandbox)
    starter = await rehearsal.spawn("run", job)
    workers = [await rehearsal.spawn("worker") for _ in range(2)]
    watch.after(moment, functools.partial(workers[0].signal, signal.SIGKILL))
    ended = await starter.wait()
    assert ended.code == 0, ended.text
    for w in workers[1:]:
        w.signal(signal.SIGTERM)
        assert (await w.wait()).code == 0
    assert (await workers[0].wait()).code == -signal.SIGKILL
    states, fences = _journal(pg_url, run_id_of(ended))
    _assert_once_and_in_order(rehearsal, rows, states)
    assert max(fences.values()) >= 2, "the killed worker's lanes were taken over"


async def test_a_drained_worker_gives_its_lanes_back_at_once(
    rehearsal: Rehearsal, pg_url: str,
) -> None:
    """A worker SIGTERMed mid-run exits 0 holding no lane; `run` finishes the run without
    waiting out a lease, nothing repeated."""
    rows = _rows()
    job = rehearsal.write_job("drained", rows, ACTIONS)
    watch = ArrivalWatch.install(rehearsal.sandbox)
    detached = await rehearsal.cli("run", job, "--detach")
    assert detached.code == 0, detached.text
    worker = await rehearsal.spawn("worker")
    watch.after(100, functools.partial(worker.signal, signal.SIGTERM))
    assert (await worker.wait()).code == 0
    with psycopg.connect(pg_url, autocommit=True) as conn:
        held = conn.execute("SELECT count(*) FROM lanes WHERE state = 'held'").fetchone()
    assert held == (0,)
    final = await rehearsal.cli("run", job)
    assert final.code == 0, final.text
    states, _ = _journal(pg_url, run_id_of(final))
    _assert_once_and_in_order(rehearsal, rows, states)


async def test_a_lane_held_in_a_worker_s_name_that_it_never_learnt_of_is_taken_over(
    rehearsal: Rehearsal, pg_url: str,
) -> None:
    """A lane the journal holds in a live worker's name that the worker never learnt of (a
    claim committed whose answer the connection lost, as a database restart leaves it; made
    here by hand) is not kept alive by the worker's renewals: it lapses, is taken over under
    the next fence, and the run finishes with every item done once and in order."""
    rows = _rows()
    job = rehearsal.write_job("orphan", rows, ACTIONS)
    detached = await rehearsal.cli("run", job, "--detach")
    assert detached.code == 0, detached.text
    run_id = run_id_of(detached)
    worker = await rehearsal.spawn("worker")
    await _logged(worker, "runner.worker.started")
    started = re.search(r"runner\.worker\.started worker=(\S+)", worker.err_path.read_text())
    assert started is not None
    with psycopg.connect(pg_url, autocommit=True) as conn:
        # The last lane in claim order: the worker has not reached it yet.
        orphan = conn.execute(
            "UPDATE lanes SET state = 'held', owner = %s, fence = fence + 1, lease_s = %s, "
            "lease_until = now() + make_interval(secs => %s) "
            "WHERE (run_id, site, account_id) = (SELECT run_id, site, account_id FROM lanes "
            "WHERE run_id = %s AND state = 'ready' ORDER BY first_seq DESC LIMIT 1) "
            "RETURNING account_id, fence", (started.group(1), LEASE_S, LEASE_S, run_id),
        ).fetchone()
    assert orphan is not None
    await _logged(worker, "runner.worker.run_finished", limit_s=60.0)
    worker.signal(signal.SIGTERM)
    assert (await worker.wait()).code == 0
    states, fences = _journal(pg_url, run_id)
    _assert_once_and_in_order(rehearsal, rows, states)
    assert fences[orphan[0]] == orphan[1] + 1


async def test_a_stopped_run_leaves_its_run_to_the_workers(
    rehearsal: Rehearsal, pg_url: str,
) -> None:
    """`run` SIGTERMed while a worker holds lanes of its run exits 143 with a closing line
    saying the run goes on (not that it was interrupted), and the worker finishes the run:
    every item done, each comment once, in row order."""
    rows = _rows()
    job = rehearsal.write_job("left", rows, ACTIONS)
    watch = ArrivalWatch.install(rehearsal.sandbox)
    worker = await rehearsal.spawn("worker")
    starter = await rehearsal.spawn("run", job)
    watch.after(100, functools.partial(starter.signal, signal.SIGTERM))
    ended = await starter.wait()
    assert ended.code == 143, ended.text
    assert "goes on: this process stopped, other workers still hold lanes" in ended.text
    assert "interrupted; run the same command again" not in ended.text
    await _logged(worker, "runner.worker.run_finished", limit_s=60.0)
    worker.signal(signal.SIGTERM)
    assert (await worker.wait()).code == 0
    states, _ = _journal(pg_url, run_id_of(ended))
    _assert_once_and_in_order(rehearsal, rows, states)


def _items(url: str, run_id: str) -> dict[str, tuple[str, int, int, float]]:
    """Every item's (state, fence, attempts, updated_at)."""
    with psycopg.connect(url, autocommit=True) as conn:
        return {f"{k}#{i}": (s, f, a, u) for k, i, s, f, a, u in conn.execute(
            "SELECT row_key, action_index, state, fence, attempts, updated_at FROM items "
            "WHERE run_id = %s", (run_id,)).fetchall()}


async def _logged(process: Process, text: str, limit_s: float = 20.0) -> None:
    """Wait until ``process`` has written ``text`` to its stderr file (another process's
    log is only seen by reading it)."""
    deadline = time.monotonic() + limit_s
    while text not in process.err_path.read_text():
        assert time.monotonic() < deadline, f"{text!r} not logged:\n{process.err_path.read_text()}"
        await asyncio.sleep(0.05)


async def test_a_stopped_worker_sends_nothing_after_its_lease_and_writes_nothing_after(
    rehearsal: Rehearsal, pg_url: str,
) -> None:
    """A worker SIGSTOPped mid-run for twice its lease, while `status` lists it with its
    lanes and `run` takes them over and finishes the run: once SIGCONT wakes it, it finds its
    lanes lost, sends not one request (Jira or gateway), and no item of the journal changes."""
    rows = _rows()
    job = rehearsal.write_job("stopped", rows, ACTIONS)
    watch = ArrivalWatch.install(rehearsal.sandbox)
    rehearsal.sandbox.world.mint_arrivals = []
    detached = await rehearsal.cli("run", job, "--detach")
    assert detached.code == 0, detached.text
    run_id = run_id_of(detached)
    sleeper = await rehearsal.spawn("worker")
    try:
        await _stop_wake_and_check(rehearsal, pg_url, job, rows, watch, run_id, sleeper)
    finally:  # a failure must not leave a stopped process behind
        sleeper.signal(signal.SIGCONT)
        sleeper.signal(signal.SIGKILL)


async def _stop_wake_and_check(rehearsal: Rehearsal, pg_url: str, job: Path,
                               rows: list[dict[str, str]], watch: ArrivalWatch, run_id: str,
                               sleeper: Process) -> None:
    stopped = asyncio.Event()

    def stop() -> None:
        sleeper.signal(signal.SIGSTOP)
        stopped.set()

    watch.after(80, stop)
    await stopped.wait()
    stopped_at = time.monotonic()
    status = await rehearsal.cli("status")
    assert status.code == 0, status.text
    assert "Workers (heartbeat" in status.out and f" {sleeper.pid} " in status.out
    finisher = await rehearsal.cli("run", job)
    assert finisher.code == 0, finisher.text
    # Time is the subject: the worker stays stopped for twice its lease, whatever came first.
    await asyncio.sleep(max(0.0, stopped_at + 2 * LEASE_S - time.monotonic()))
    before = (len(watch), len(rehearsal.sandbox.world.mint_arrivals or ()), _items(pg_url, run_id))
    sleeper.signal(signal.SIGCONT)
    await _logged(sleeper, "runner.lane.lost")
    sleeper.signal(signal.SIGTERM)
    assert (await sleeper.wait()).code == 0
    after = (len(watch), len(rehearsal.sandbox.world.mint_arrivals or ()), _items(pg_url, run_id))
    late = [(a.route, a.sender, a.marker) for a in watch[before[0]:]]
    assert after[:2] == before[:2], f"requests arrived from the worker woken past its lease: {late}"
    assert after[2] == before[2], "the woken worker changed the journal"
    states, fences = _journal(pg_url, run_id)
    _assert_once_and_in_order(rehearsal, rows, states)
    assert max(fences.values()) >= 2
