"""Why items were not done, through the real command: a reason is a stable code counted once
however many users it strikes, with the item's particulars (Jira's words, the HTTP status, the
issue it targeted) in their own fields of the summary, `status` and `report`; and what a resume
found of the creates whose answers were lost."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from runner.sandbox.app import RunningSandbox, serve
from runner.sandbox.config import Faults, SandboxUser
from runner.sandbox.jira.faults import FaultPlan
from runner.sandbox.testing import COMMENT_ACTION as COMMENT
from tests.e2e.harness import (
    Rehearsal,
    account,
    bulk_sandbox_config,
    comments_by_item,
    run_id_of,
)

DEACTIVATED = [f"5dead000{n:016x}" for n in range(40)]
NOT_FOUND = "Issue does not exist or you do not have permission to see it."
PROPERTY = """
[[actions]]
type = "issue.property.set"
issue = "{issue}"
key = "legacy"
value = { id = "{legacy_id}" }
"""


@pytest.fixture
async def sandbox() -> AsyncIterator[RunningSandbox]:
    config = bulk_sandbox_config(5)
    acme = config.sites["acme"]
    gone = tuple(SandboxUser(a, f"Gone {n}", "deactivated") for n, a in enumerate(DEACTIVATED))
    config = replace(config, sites={**config.sites,
                                    "acme": replace(acme, users=acme.users + gone)})
    async with serve(config, port=0) as running:
        yield running


async def test_a_reason_is_one_code_counted_once_with_its_particulars_apart(
    tmp_path: Path, sandbox: RunningSandbox
) -> None:
    """40 deactivated users and a row on a missing issue: the summary gives Jira's message with
    the 404; `status` has one "By reason" line per code with its count and no account ID; its
    JSON and the report carry the code, its text, the message, the status and the target."""
    rehearsal = Rehearsal.start(tmp_path, sandbox)
    rows = [{"legacy_id": f"L{n}", "account_id": a, "issue": "MIG-1"}
            for n, a in enumerate(DEACTIVATED)]
    rows += [{"legacy_id": "L-OK", "account_id": account(1), "issue": "MIG-2"},
             {"legacy_id": "L-404", "account_id": account(2), "issue": "MIG-999"}]
    # on_failure = continue: the 404 row's property is sent (and fails) after its comment.
    ran = await rehearsal.cli("run", rehearsal.write_job("gone", rows, COMMENT + PROPERTY,
                                                         on_failure="continue"))
    assert ran.code == 1, ran.text
    assert f"2  failed    http-404: {NOT_FOUND}" in ran.out
    assert "80  skipped   user-deactivated: the user is deactivated" in ran.out
    run_id = run_id_of(ran)

    status = await rehearsal.cli("status", run_id)
    by_reason = status.out.split("By reason:\n", 1)[1].splitlines()
    assert [line.split() for line in by_reason] == [
        ["STATE", "COUNT", "REASON", "WHAT", "IT", "MEANS"],
        ["skipped", "80", "user-deactivated", "the", "user", "is", "deactivated"],
        ["failed", "2", "http-404", "not", "found,", "or", "the", "user", "can't", "see", "it",
         "(http", "404)"],
    ]
    data = json.loads((await rehearsal.cli("status", run_id, "--format", "json")).out)
    assert data["by_reason"] == [
        {"state": "skipped", "reason": "user-deactivated", "text": "the user is deactivated",
         "count": 80},
        {"state": "failed", "reason": "http-404",
         "text": "not found, or the user can't see it (http 404)", "count": 2},
    ]

    report = json.loads((await rehearsal.cli("report", run_id, "--format", "json")).out)
    failed = [i for i in report["items"] if i["state"] == "failed"]
    assert sorted((i["row"], i["target"], i["status"], i["message"]) for i in failed) == [
        ("L-404", "POST /rest/api/3/issue/MIG-999/comment", 404, NOT_FOUND),
        ("L-404", "PUT /rest/api/3/issue/MIG-999/properties/legacy", 404, NOT_FOUND),
    ]
    skipped = [i for i in report["items"] if i["state"] == "skipped"]
    assert {(i["reason"], i["reason_text"]) for i in skipped} == {
        ("user-deactivated", "the user is deactivated")}
    assert {i["account_id"] for i in skipped} == set(DEACTIVATED)
    first = next(i for i in skipped if i["row"] == "L0" and i["action"] == "comment.add")
    assert first["target"] == "POST /rest/api/3/issue/MIG-1/comment"
    assert DEACTIVATED[0] in first["message"] and first["status"] is None

    csv_report = (await rehearsal.cli("report", run_id, "--format", "csv")).out.splitlines()
    assert csv_report[0] == ("row,action_index,action,account_id,site,state,reason,reason_text,"
                             "message,target,status,waited_s,attempts,updated_at")
    assert any(line.startswith("L-404,0,comment.add,") and
               f"{NOT_FOUND},POST /rest/api/3/issue/MIG-999/comment,404,," in line
               for line in csv_report)


async def test_a_resume_says_what_recovery_found_of_uncertain_creates(
    tmp_path: Path, sandbox: RunningSandbox
) -> None:
    """Every comment's answer lost after it was made: the run ends with them uncertain and
    names `resume` (not `retry`); the resume finds each in Jira, sends none again, and says
    "3 uncertain: 3 found in Jira, 0 sent again"."""
    plan: FaultPlan = sandbox.world.parts["jira.faults"]
    plan.faults = Faults(drop_connection=1.0, after_effect=1.0)
    rehearsal = Rehearsal.start(tmp_path, sandbox)
    rows = [{"legacy_id": f"L{n}", "account_id": account(n), "issue": f"MIG-{n + 1}"}
            for n in range(3)]
    first = await rehearsal.cli("run", rehearsal.write_job("lost", rows, COMMENT))
    assert first.code == 1, first.text
    run_id = run_id_of(first)
    closing = first.out.strip().splitlines()[-1]
    assert closing == (f"run {run_id}: 0 done, 3 uncertain: some items failed (exit 1); see "
                       f"`forge-runner report {run_id}`, then `forge-runner resume {run_id}` "
                       "resolves the 3 uncertain")
    assert "retry" not in closing
    assert "3  uncertain outcome-unknown: server disconnected" in first.out

    plan.faults = Faults()
    resumed = await rehearsal.cli("resume", run_id)
    assert resumed.code == 0, resumed.text
    assert "recovery: 3 uncertain: 3 found in Jira, 0 sent again" in resumed.out
    assert resumed.out.strip().splitlines()[-1] == f"run {run_id}: all done (3 items)"
    assert comments_by_item(rehearsal.jira) == {"L0#0": 1, "L1#0": 1, "L2#0": 1}
