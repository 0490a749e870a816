"""A row whose action fails: the job's ``on_failure`` says whether its later actions still run.
The real command against a served sandbox; what it journaled read back with `report`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from runner.sandbox.app import RunningSandbox, serve
from runner.sandbox.testing import CLOUD_A
from tests.e2e.harness import Rehearsal, account, bulk_sandbox_config, run_id_of, write_csv

pytestmark = pytest.mark.slow

# A comment, then a user property: MIG-999 does not exist, so the comment of row LEG-2 fails
# with a 404 while LEG-1's goes through.
ACTIONS = """\
[[actions]]
type = "comment.add"
issue = "{issue}"
body = "Migrated {legacy_id}"

[[actions]]
type = "user.property.set"
key = "migrated"
value = { id = "{legacy_id}" }
"""
ROWS = [
    {"legacy_id": "LEG-1", "account_id": account(1), "issue": "MIG-1"},
    {"legacy_id": "LEG-2", "account_id": account(2), "issue": "MIG-999"},
]


@pytest.fixture
async def sandbox() -> AsyncIterator[RunningSandbox]:
    async with serve(bulk_sandbox_config(4), port=0) as running:
        yield running


@pytest.fixture
def rehearsal(tmp_path: Path, sandbox: RunningSandbox) -> Rehearsal:
    return Rehearsal.start(tmp_path, sandbox, concurrency=2)


def _job(rehearsal: Rehearsal, on_failure: str | None) -> Path:
    line = f'on_failure = "{on_failure}"\n' if on_failure else ""
    job = rehearsal.write_job("migration", ROWS, ACTIONS)
    job.write_text(line + job.read_text())
    return job


def _user_properties(rehearsal: Rehearsal) -> dict[str, object]:
    return {account_id: props.get("migrated")
            for account_id, props in rehearsal.jira.site(CLOUD_A).user_properties.items()}


async def test_by_default_a_failed_action_stops_its_row(rehearsal: Rehearsal) -> None:
    """Without on_failure (stop-row): LEG-2's comment fails with Jira's 404, its user property
    is not set but journaled skipped with a reason naming the failed action; LEG-1 is whole;
    the run exits 1 and its summary counts the skipped item."""
    done = await rehearsal.cli("run", _job(rehearsal, None))
    assert done.code == 1, done.text
    assert "1 skipped" in done.out
    assert _user_properties(rehearsal) == {account(1): {"id": "LEG-1"}}
    report = await rehearsal.cli("report", run_id_of(done), "--format", "json")
    items = {(i["row"], i["action"]): i for i in json.loads(report.out)["items"]}
    assert items[("LEG-2", "comment.add")]["state"] == "failed"
    assert "404" in items[("LEG-2", "comment.add")]["reason"]
    skipped = items[("LEG-2", "user.property.set")]
    assert skipped["state"] == "skipped"
    assert (skipped["reason"], skipped["message"]) == (
        "row-stopped", "actions[0] comment.add failed")
    assert ("LEG-1", "user.property.set") not in items


async def test_on_failure_continue_runs_the_rest_of_the_row(rehearsal: Rehearsal) -> None:
    """``on_failure = "continue"``: LEG-2's user property is set although its comment failed,
    and nothing is skipped."""
    done = await rehearsal.cli("run", _job(rehearsal, "continue"))
    assert done.code == 1, done.text
    assert "3 done, 1 failed: some items failed" in done.out
    assert _user_properties(rehearsal) == {account(1): {"id": "LEG-1"},
                                           account(2): {"id": "LEG-2"}}


async def test_retry_runs_a_stopped_row_once_its_cause_is_fixed(rehearsal: Rehearsal) -> None:
    """`retry` puts the failed comment and the action its row skipped back in line: once the
    row names an issue that exists, both are done and the run is all done."""
    first = await rehearsal.cli("run", _job(rehearsal, "stop-row"))
    assert first.code == 1, first.text
    write_csv(rehearsal.folder / "migration.csv", [ROWS[0], {**ROWS[1], "issue": "MIG-2"}])
    again = await rehearsal.cli("retry", run_id_of(first))
    assert again.code == 0, again.text
    assert _user_properties(rehearsal)[account(2)] == {"id": "LEG-2"}


async def test_an_unknown_on_failure_is_refused(rehearsal: Rehearsal) -> None:
    """``on_failure = "halt"`` exits 2 naming the key and the two choices; nothing is sent."""
    done = await rehearsal.cli("run", _job(rehearsal, "halt"))
    assert done.code == 2, done.text
    assert "on_failure" in done.err and "'stop-row' or 'continue'" in done.err
    assert _user_properties(rehearsal) == {}
