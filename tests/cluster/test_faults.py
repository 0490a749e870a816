"""Issue 15's faults, with several real worker processes on one run, the sandbox logging every
arrival and the checker counting what it saw:

- 3 workers, 2,000 users, 6,000 creates, budgets that bind, one worker SIGKILLed: its lanes are
  taken over within lease + 5 s; 0 lost, 0 duplicated, 0 inversions; every budget kept;
- one worker SIGSTOPped for twice its lease, then SIGCONT: 0 requests from it for its lost
  lanes after its lease ended, 0 of its writes accepted after that;
- a worker in a network namespace cut from PostgreSQL for 90 s (a proxy blackholes it): it
  sends nothing for its lanes after their lease ends, they are taken over within lease + 5 s,
  and once the link is back (its held bytes delivered) nothing stale lands.

Each moment is the N-th comment to arrive (seeded; ``FORGE_RUNNER_E2E_SEED`` replays one), so a
worker is hit with requests on the wire, wherever in its lanes that falls.
"""

from __future__ import annotations

import asyncio
import signal
import time
from urllib.parse import urlsplit

import pytest

from tests.cluster.cluster import Cluster, via
from tests.cluster.faults import (
    BIG,
    CUT_S,
    LEASE_S,
    RUN_LIMIT_S,
    SMALL,
    assert_clean,
    assert_nothing_after,
    seeded,
    started,
    verdict_of,
)
from tests.cluster.hosts import Host, Proxy

pytestmark = pytest.mark.slow


async def test_a_sigkilled_worker_s_lanes_are_taken_over_and_no_effect_is_lost_or_repeated(
        cluster: Cluster) -> None:
    """SIGKILL of one of 3 workers mid-run (2,000 users, 6,000 creates): its lanes held under
    a higher fence (or done) within lease + 5 s; the run finishes; 0 lost, 0 duplicated, 0
    inversions, 0 made with the wrong token, 0 stale writes, every budget within its limit in
    every window (the quota used to 80 % of it in some window: it bound), no 429."""
    run_id, expected, moment = await started(cluster, 2000, 3, seeded(600, 4800))
    begun = time.time()
    workers = [await cluster.worker() for _ in range(3)]
    victim = workers[0]
    await moment.wait()
    victim.process.signal_group(signal.SIGKILL)
    killed_at = time.time()
    held = cluster.held_by(run_id, victim)
    assert held, "the victim held no lane when it was killed"
    taken = await cluster.taken_over(held, LEASE_S + 30)
    await cluster.finished(run_id, RUN_LIMIT_S)
    took = time.time() - begun
    await cluster.stop()
    assert (await victim.process.wait()).code == -signal.SIGKILL
    verdict = verdict_of(cluster, run_id, expected)
    print(f"{len(held)} lanes taken over {taken - killed_at:.1f} s after the kill; run "
          f"{took:.1f} s; peaks: mints {verdict.peak('mints')}/{BIG.mints}, quota "
          f"{verdict.peak('quota')}/{BIG.quota}")
    assert taken - killed_at <= LEASE_S + 5
    assert_clean(verdict)
    assert verdict.peak("quota") >= 0.8 * BIG.quota


@pytest.mark.parametrize("budgets", [SMALL], ids=["small"], indirect=True)
async def test_a_worker_stopped_past_its_lease_sends_nothing_for_its_lost_lanes(
        cluster: Cluster) -> None:
    """SIGSTOP of one of 3 workers for twice its lease, then SIGCONT: its lanes are taken
    over; after its lease ended it sent nothing for their users and none of its writes under
    their old fences was accepted; the run finishes with every count 0."""
    run_id, expected, moment = await started(cluster, 600, 2, seeded(200, 700))
    workers = [await cluster.worker() for _ in range(3)]
    victim = workers[0]
    await moment.wait()
    victim.process.signal_group(signal.SIGSTOP)
    stopped_at = time.time()
    held = cluster.held_by(run_id, victim)
    assert held, "the victim held no lane when it was stopped"
    lease_end = cluster.lease_end(held)
    taken = await cluster.taken_over(held, LEASE_S + 30)
    # Stopped for twice its lease, as the issue asks: a span, not something to wait for.
    await asyncio.sleep(max(0.0, stopped_at + 2 * LEASE_S - time.time()))
    victim.process.signal_group(signal.SIGCONT)
    await cluster.finished(run_id, RUN_LIMIT_S)
    await cluster.stop()
    print(f"{len(held)} lanes; lease ended {lease_end - stopped_at:.1f} s after the stop, "
          f"taken over {taken - stopped_at:.1f} s after it")
    assert_nothing_after(cluster, run_id, victim, held, lease_end)
    assert_clean(verdict_of(cluster, run_id, expected))


@pytest.mark.parametrize("budgets", [SMALL], ids=["small"], indirect=True)
async def test_a_worker_cut_from_postgresql_sends_nothing_after_its_lease_and_nothing_stale_lands(
        cluster: Cluster, host: Host) -> None:
    """A worker in a network namespace reaching PostgreSQL and the sandbox through proxies,
    beside 2 in this one; its PostgreSQL blackholed for 90 s: nothing from it for its lanes'
    users after their lease ended, its lanes taken over within lease + 5 s of the cut; after
    the link heals and it drains, no write of its old fences was accepted; every count 0.

    The server ends a session idle in a transaction after 2 s (set on the test's database).
    Without that, a worker cut off between a transaction's statements (a budget take is
    several, a journal write with its lane guard too) holds that transaction's row locks for as
    long as the server believes the connection alive: the budget's row stalls every worker and
    a lane row locked FOR SHARE is skipped by every claim, so its lanes are never taken over.
    Seen twice of two runs without the setting; the runner should set it itself."""
    cluster.abort_idle_transactions(2.0)
    pg = urlsplit(cluster.pg_url)
    sb = urlsplit(cluster.sandbox.url)
    async with Proxy(host.root_addr, pg.hostname or "", pg.port or 5432) as to_pg, \
            Proxy(host.root_addr, sb.hostname or "", sb.port or 80) as to_sandbox:
        config = cluster.write_config("namespaced.toml", f"http://{to_sandbox.address}",
                                      via(cluster.pg_url, to_pg.address))
        run_id, expected, moment = await started(cluster, 600, 2, seeded(200, 700))
        cut_off = await cluster.worker(host=host, config=config)
        for _ in range(2):
            await cluster.worker()
        await moment.wait()
        to_pg.blackhole()
        cut_at = time.time()
        held = cluster.held_by(run_id, cut_off)
        assert held, "the namespaced worker held no lane when it was cut off"
        lease_end = cluster.lease_end(held)
        taken = await cluster.taken_over(held, LEASE_S + 30)
        # Cut for 90 s, as the issue asks: a span, not something to wait for.
        await asyncio.sleep(max(0.0, cut_at + CUT_S - time.time()))
        to_pg.heal()
        await cluster.finished(run_id, RUN_LIMIT_S)
        await cluster.stop()  # its held bytes are delivered before it can exit
    print(f"{len(held)} lanes; lease ended {lease_end - cut_at:.1f} s after the cut, taken "
          f"over {taken - cut_at:.1f} s after it")
    assert taken - cut_at <= LEASE_S + 5
    assert_nothing_after(cluster, run_id, cut_off, held, lease_end)
    assert_clean(verdict_of(cluster, run_id, expected))
