"""Issue 15's restart fault: PostgreSQL restarted twice mid-run under 3 workers (``pg_ctlcluster
... restart -m immediate``, as a crash of the database; it restarts the machine's server, so it
is run apart from other people's tests, as tests/e2e/test_pg_restart.py is).

An outage (about 2.5 s) shorter than the lease takes no lane over: every lane ends under the
fence of its first claim. Nothing is lost or repeated, each user's items stay in order.
"""

from __future__ import annotations

import pytest

from runner.sandbox.testing import pattern_account
from tests.cluster.cluster import Cluster
from tests.cluster.faults import SMALL, assert_clean, seeded, started, verdict_of
from tests.e2e.harness import COMMENT_ROUTE, ArrivalWatch
from tests.e2e.test_pg_restart import _can_restart, _restart

pytestmark = pytest.mark.slow

AFTER_FIRST = 400  # comments between the first restart and the second


@pytest.mark.parametrize("budgets", [SMALL], ids=["small"], indirect=True)
async def test_two_restarts_mid_run_lose_nothing_and_take_no_lane_over(
        cluster: Cluster) -> None:
    """The server restarted at a seeded comment and again 400 comments after it is back, 3
    workers on 1,200 creates: the run finishes with every count 0, and every lane's fence is
    1 (claimed once, never taken over)."""
    _can_restart()
    run_id, expected, moment = await started(cluster, 600, 2, seeded(100, 400))
    for _ in range(3):
        await cluster.worker()
    await moment.wait()
    await _restart()
    watch = cluster.sandbox.world.jira_arrivals
    assert isinstance(watch, ArrivalWatch) and COMMENT_ROUTE in watch.routes
    await watch.event_after(AFTER_FIRST).wait()
    await _restart()
    await cluster.finished(run_id, 600.0)
    await cluster.stop()
    assert_clean(verdict_of(cluster, run_id, expected))
    fences = {lane.account_id: lane.fence for lane in cluster.lanes(run_id)}
    assert len(fences) == 600 and pattern_account(0) in fences
    assert set(fences.values()) == {1}, {a: f for a, f in fences.items() if f != 1}
    assert not any(claim.fence > 1 for claim in cluster.claims)
