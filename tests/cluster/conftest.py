"""Fixtures of the cluster tests: a "host" (a network namespace of its own), and proxies."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from runner.sandbox.app import serve
from tests.cluster.cluster import Budgets, Cluster, sandbox_config
from tests.cluster.faults import BIG, ISSUES, LEASE_S, REQUEST_TIMEOUT_S
from tests.cluster.hosts import Host, make_host, require_root


@pytest.fixture
def host() -> Iterator[Host]:
    """A network namespace joined to this one by a veth pair; removed after the test, with
    whatever still runs in it. Skips without root, except under CI=true (fails)."""
    require_root()
    with make_host() as made:
        yield made


@pytest.fixture(params=[BIG], ids=["big"])
def budgets(request: pytest.FixtureRequest) -> Budgets:
    """The budgets of the sandbox and of the workers' config (``faults.BIG`` unless a test
    parametrizes it indirectly)."""
    budgets: Budgets = request.param
    return budgets


@pytest.fixture
async def cluster(tmp_path: Path, pg_url: str, budgets: Budgets) -> AsyncIterator[Cluster]:
    """A served sandbox logging arrivals, a PostgreSQL journal of the test's own, a config
    for both; every worker still running is drained afterwards."""
    async with serve(sandbox_config(ISSUES, budgets), port=0) as sb:
        made = Cluster(tmp_path, sb, pg_url, budgets, LEASE_S, REQUEST_TIMEOUT_S)
        try:
            yield made
        finally:
            await made.stop()
