"""Running a finished job again repeats nothing: the real command, three times, against one
sandbox that keeps its Jira state; rows added to the source; `--fresh` saying what it repeats."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from runner.sandbox.app import RunningSandbox, serve
from runner.sandbox.testing import MIGRATION_ACTIONS
from tests.e2e.harness import (
    ArrivalWatch,
    Rehearsal,
    account,
    bulk_sandbox_config,
    comments_by_item,
    run_id_of,
    write_csv,
)

pytestmark = pytest.mark.slow


def _rows(n: int) -> list[dict[str, str]]:
    return [{"legacy_id": f"LEG-{i:03d}", "account_id": account(i % 5),
             "issue": f"MIG-{i % 4 + 1}"} for i in range(n)]


@pytest.fixture
async def sandbox() -> AsyncIterator[RunningSandbox]:
    async with serve(bulk_sandbox_config(4), port=0) as running:
        yield running


@pytest.fixture
def rehearsal(tmp_path: Path, sandbox: RunningSandbox) -> Rehearsal:
    return Rehearsal.start(tmp_path, sandbox, concurrency=4)


async def test_the_same_migration_run_three_times_makes_each_comment_once(
    rehearsal: Rehearsal,
) -> None:
    """Three `run`s of one migration leave each comment exactly once in the sandbox's Jira; the
    second and third say there is nothing to do (which run, when, its counts), exit 0 and send
    no request."""
    job = rehearsal.write_job("migration", _rows(20), MIGRATION_ACTIONS)
    first = await rehearsal.cli("run", job)
    assert first.code == 0, first.text
    run_id = run_id_of(first)
    watch = ArrivalWatch.install(rehearsal.sandbox)
    for _ in range(2):
        again = await rehearsal.cli("run", job)
        assert again.code == 0, again.text
        assert run_id_of(again) == run_id
        said = " ".join(again.out.split())  # the console wraps long lines
        assert f"nothing to do: every row of migration was done by run {run_id}" in said
        assert "(40 done)" in said and "finished 20" in said
    assert watch.seen == 0, "a finished job run again sent writes"
    comments = comments_by_item(rehearsal.jira)
    assert set(comments) == {f"LEG-{i:03d}#0" for i in range(20)}
    assert set(comments.values()) == {1}


async def test_a_row_added_to_the_csv_is_done_by_the_next_run_and_only_it(
    rehearsal: Rehearsal,
) -> None:
    """After a finished run, a row appended to the CSV is done by the next `run` (its comment
    and property), and only its two writes are sent: no other row is done again."""
    job = rehearsal.write_job("migration", _rows(12), MIGRATION_ACTIONS)
    first = await rehearsal.cli("run", job)
    assert first.code == 0, first.text
    write_csv(rehearsal.folder / "migration.csv", _rows(13))
    watch = ArrivalWatch.install(rehearsal.sandbox)
    second = await rehearsal.cli("run", job)
    assert second.code == 0, second.text
    assert run_id_of(second) == run_id_of(first)
    assert "looking for rows added since" in second.out
    assert "nothing to do" not in second.out
    assert watch.seen == 2
    assert {a.issue for a in watch if a.route in watch.routes} == {"MIG-1"}
    comments = comments_by_item(rehearsal.jira)
    assert set(comments) == {f"LEG-{i:03d}#0" for i in range(13)}
    assert set(comments.values()) == {1}
    issue = rehearsal.jira.issue(rehearsal.sandbox.config.sites["acme"].cloud_id, "MIG-1")
    assert issue is not None and issue.properties["legacy"] == {"id": "LEG-012"}


async def test_fresh_says_how_many_creates_it_sends_again(rehearsal: Rehearsal) -> None:
    """`run --fresh` after a finished run first prints how many creates it will send again
    (the done comment.add items of the run a plain rerun would pick up), then does so."""
    job = rehearsal.write_job("migration", _rows(10), MIGRATION_ACTIONS)
    first = await rehearsal.cli("run", job)
    assert first.code == 0, first.text
    fresh = await rehearsal.cli("run", job, "--fresh")
    assert fresh.code == 0, fresh.text
    old = run_id_of(first)
    assert (f"--fresh: starting over; run {old} (finished) did 10 create(s) (comment.add 10): "
            "this run sends them again") in fresh.err
    assert "starting run" in fresh.out and run_id_of(fresh) != old
    assert set(comments_by_item(rehearsal.jira).values()) == {2}


async def test_an_interrupted_fresh_run_names_what_resumes_it(rehearsal: Rehearsal) -> None:
    """A `--fresh` run stopped by SIGTERM says to resume it with `forge-runner resume RUN`
    (the same --fresh command would start yet another run); a plain `run` resumes it too."""
    job = rehearsal.write_job("migration", _rows(40), MIGRATION_ACTIONS)
    watch = ArrivalWatch.install(rehearsal.sandbox)
    process = await rehearsal.spawn("run", job, "--fresh")
    watch.after(10, lambda: process.signal(signal.SIGTERM))
    stopped = await process.wait()
    assert stopped.code == 143, stopped.text
    run_id = run_id_of(stopped)
    said = " ".join(stopped.out.split())  # the console wraps long lines
    assert f"resume it with `forge-runner resume {run_id}`" in said
    assert "run the same command again" not in said
    resumed = await rehearsal.cli("run", job)
    assert resumed.code == 0, resumed.text
    assert "resuming run" in resumed.out and run_id_of(resumed) == run_id
    comments = comments_by_item(rehearsal.jira)
    assert set(comments) == {f"LEG-{i:03d}#0" for i in range(40)}
    assert set(comments.values()) == {1}
