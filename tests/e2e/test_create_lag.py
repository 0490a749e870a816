"""A run killed in the middle of issue creates and resumed at once, while search still lags.

Recovery looks for an issue whose create lost its answer with ``search/jql``, which is
eventually consistent. The sandbox is served with a search lag; the runner must not take "not
found" for "missing" while the issue may only be unindexed.
"""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from runner.actions import ITEM_PROPERTY_KEY
from runner.sandbox.app import RunningSandbox, serve
from runner.sandbox.testing import CLOUD_A
from tests.e2e.harness import ArrivalWatch, Rehearsal, account, bulk_sandbox_config, run_id_of

CREATE_ROUTE = "POST /rest/api/3/issue"
SEARCH_ROUTE = "GET /rest/api/3/search/jql"
ROWS = 40
ACTIONS = """\
[[actions]]
type = "issue.create"
project = "MIG"
issuetype = "Task"
summary = "Migrated {legacy_id}"
"""

pytestmark = pytest.mark.slow


def _rows() -> list[dict[str, str]]:
    return [{"legacy_id": f"LEG-{n:03d}", "account_id": account(n % 8)} for n in range(ROWS)]


def _issues_by_item(rehearsal: Rehearsal) -> Counter[str]:
    found: Counter[str] = Counter()
    for issue in rehearsal.jira.site(CLOUD_A).issues.values():
        prop: Any = issue.properties.get(ITEM_PROPERTY_KEY)
        if isinstance(prop, dict) and isinstance(prop.get("item"), str):
            found[prop["item"]] += 1
    return found


@pytest.fixture
async def lagging() -> AsyncIterator[RunningSandbox]:
    async with serve(replace(bulk_sandbox_config(5), search_lag_s=5.0), port=0) as running:
        yield running


async def _kill_mid_create_and_resume(rehearsal: Rehearsal) -> None:
    job = rehearsal.write_job("creates", _rows(), ACTIONS)
    watch = ArrivalWatch.install(rehearsal.sandbox, routes={CREATE_ROUTE})
    process = await rehearsal.spawn("run", job)
    watch.after(12, lambda: process.signal(signal.SIGKILL))
    killed = await process.wait()
    assert killed.code == -signal.SIGKILL, killed.text
    resumed = await rehearsal.cli("run", job)
    assert resumed.code == 0, resumed.text
    assert "resuming run" in resumed.out and run_id_of(resumed) == run_id_of(killed)


def _with_settle(rehearsal: Rehearsal, settle_s: float) -> None:
    text = rehearsal.config_path.read_text()
    rehearsal.config_path.write_text(
        text.replace("request_timeout_s = 30.0\n",
                     f"request_timeout_s = 30.0\nsearch_settle_s = {settle_s}\n", 1))


async def test_killed_mid_create_and_resumed_at_once_makes_each_issue_once(
    tmp_path: Path, lagging: RunningSandbox
) -> None:
    """Under a 5 s search lag, a run killed (SIGKILL) while creates are on the wire and resumed
    at once leaves exactly one issue per row: a create not found by search within
    ``search_settle_s`` of its start is looked for again, not sent again."""
    rehearsal = Rehearsal.start(tmp_path, lagging)
    _with_settle(rehearsal, 6.0)
    await _kill_mid_create_and_resume(rehearsal)
    issues = _issues_by_item(rehearsal)
    assert {key: n for key, n in issues.items() if n != 1} == {}
    assert set(issues) == {f"LEG-{n:03d}#0" for n in range(ROWS)}
    # The creates cut short were looked up by search (at least once each, twice if too early).
    assert lagging.world.jira_calls[SEARCH_ROUTE] > 0


async def test_without_the_settle_time_a_lagging_search_makes_an_issue_twice(
    tmp_path: Path,
) -> None:
    """The same kill and immediate resume with ``search_settle_s = 0`` (and a search lag far
    longer than the resume takes) creates some row's issue twice: the guard above is needed."""
    config = replace(bulk_sandbox_config(5), search_lag_s=300.0)
    async with serve(config, port=0) as sandbox:
        rehearsal = Rehearsal.start(tmp_path, sandbox)
        _with_settle(rehearsal, 0.0)
        await _kill_mid_create_and_resume(rehearsal)
        issues = _issues_by_item(rehearsal)
        assert set(issues) == {f"LEG-{n:03d}#0" for n in range(ROWS)}
        assert max(issues.values()) == 2
