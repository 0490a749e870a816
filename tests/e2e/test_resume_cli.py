"""What `forge-runner` says and does around resuming: a changed job, `retry --failed`, a job
already running, `status` and `report`, each with a real process against the served sandbox."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from runner.sandbox.app import RunningSandbox, serve
from runner.sandbox.testing import CLOUD_A
from runner.sandbox.testing import COMMENT_ACTION as COMMENT
from tests.e2e.harness import (
    ArrivalWatch,
    Rehearsal,
    account,
    bulk_sandbox_config,
    comments_by_item,
    run_id_of,
)


def _rows(n: int, issue: str = "MIG-{k}") -> list[dict[str, str]]:
    return [{"legacy_id": f"LEG-{i:03d}", "account_id": account(i % 7),
             "issue": issue.format(k=i % 3 + 1)} for i in range(n)]


@pytest.fixture
async def sandbox() -> AsyncIterator[RunningSandbox]:
    async with serve(bulk_sandbox_config(3), port=0) as running:
        yield running


@pytest.fixture
def rehearsal(tmp_path: Path, sandbox: RunningSandbox) -> Rehearsal:
    return Rehearsal.start(tmp_path, sandbox, concurrency=4)


@pytest.mark.slow
async def test_a_changed_job_is_refused_on_resume_unless_fresh(rehearsal: Rehearsal) -> None:
    """With an unfinished run, a changed job file exits 2 naming the change and sends nothing;
    `--fresh` starts a new run that finishes."""
    job = rehearsal.write_job("change", _rows(40), COMMENT)
    watch = ArrivalWatch.install(rehearsal.sandbox)
    first = await rehearsal.spawn("run", job)
    watch.at(10, lambda: first.signal(signal.SIGKILL))
    killed = await first.wait()
    assert killed.code == -signal.SIGKILL
    old_run = run_id_of(killed)

    job.write_text(job.read_text().replace('body = "Migrated {legacy_id}"',
                                           'body = "Moved {legacy_id}"'))
    sent = watch.seen
    refused = await rehearsal.cli("run", job)
    assert refused.code == 2, refused.text
    assert f"the job changed since its unfinished run {old_run} started" in refused.err
    assert '-body = "Migrated {legacy_id}"' in refused.err
    assert '+body = "Moved {legacy_id}"' in refused.err
    assert "--fresh" in refused.err
    assert watch.seen == sent

    fresh = await rehearsal.cli("run", job, "--fresh")
    assert fresh.code == 0, fresh.text
    assert "starting run" in fresh.out and run_id_of(fresh) != old_run
    moved = [c for issue in rehearsal.jira.site(CLOUD_A).issues.values()
             for c in issue.comments if "Moved" in str(c.body)]
    assert len(moved) == 40

    listed = await rehearsal.cli("status", "--format", "json")
    assert listed.code == 0, listed.text
    states = {r["run"]: r["state"] for r in json.loads(listed.out)["runs"]}
    assert states == {old_run: "running", run_id_of(fresh): "finished"}


@pytest.mark.slow
async def test_retry_failed_puts_failed_items_back_and_finishes_them(
    rehearsal: Rehearsal,
) -> None:
    """Items failing on an issue that doesn't exist leave the run failed-with-items (exit 1),
    listed by `status` and `report`; once the issue exists, `retry RUN --failed` does exactly
    those items and the run ends with everything done."""
    rows = _rows(12) + _rows(6, issue="MIG-4")
    for n, row in enumerate(rows[12:]):
        row["legacy_id"] = f"LEG-4{n:02d}"
    job = rehearsal.write_job("retry", rows, COMMENT)

    first = await rehearsal.cli("run", job)
    assert first.code == 1, first.text
    run_id = run_id_of(first)
    assert f"`forge-runner retry {run_id}` puts the 6 failed" in first.out

    status = await rehearsal.cli("status", run_id, "--format", "json")
    assert status.code == 0, status.text
    counts = json.loads(status.out)["counts"]
    assert (counts["done"], counts["failed"], counts["pending"]) == (12, 6, 0)
    report = await rehearsal.cli("report", run_id, "--format", "json")
    assert report.code == 0, report.text
    failed = json.loads(report.out)["items"]
    assert sorted(i["row"] for i in failed) == [f"LEG-4{n:02d}" for n in range(6)]
    assert {(i["state"], i["reason"], i["action"]) for i in failed} == {
        ("failed", "http-404", "comment.add")}
    listed = await rehearsal.cli("status")
    assert run_id in listed.out and "finished" in listed.out

    site = rehearsal.jira.site(CLOUD_A)
    created = rehearsal.jira.create_issue(site, "MIG", "Created late", account(0), time.time())
    assert created.key == "MIG-4"
    retried = await rehearsal.cli("retry", run_id, "--failed")
    assert retried.code == 0, retried.text
    assert run_id_of(retried) == run_id

    comments = comments_by_item(rehearsal.jira)
    assert comments == {f"{row['legacy_id']}#0": 1 for row in rows}
    assert len(created.comments) == 6
    status = await rehearsal.cli("status", run_id, "--format", "json")
    data = json.loads(status.out)
    assert data["state"] == "finished"
    assert (data["counts"]["done"], data["counts"]["failed"]) == (18, 0)
    report = await rehearsal.cli("report", run_id, "--format", "csv")
    assert report.out.strip().splitlines()[1:] == []


async def test_a_second_run_of_a_running_job_exits_4_at_once(
    tmp_path: Path, sandbox: RunningSandbox
) -> None:
    """While one process runs the job, a second `run` of it exits 4 with a message naming the
    run and its process, sending nothing; the first then finishes undisturbed."""
    # One worker: when its request is on the wire, its journal has nothing left to write.
    rehearsal = Rehearsal.start(tmp_path, sandbox, concurrency=1)
    rows = _rows(10)
    job = rehearsal.write_job("overlap", rows, COMMENT)
    watch = ArrivalWatch.install(sandbox)
    first = await rehearsal.spawn("run", job)
    # Freeze the first process, its lock held, the moment its first comment arrives.
    watch.at(1, lambda: first.signal(signal.SIGSTOP))
    arrived = watch.event_after(1)
    await arrived.wait()
    try:
        second = await rehearsal.cli("run", job)
    finally:
        first.signal(signal.SIGCONT)
    assert second.code == 4, second.text
    assert "is already running" in second.err
    assert f"pid {first.pid}" in second.err
    assert "not starting it twice" in second.err
    assert len(second.err.strip().splitlines()) == 1 and not second.out
    assert watch.seen == 1

    ended = await first.wait()
    assert ended.code == 0, ended.text
    assert comments_by_item(rehearsal.jira) == {f"{row['legacy_id']}#0": 1 for row in rows}
