"""Runs: opened, resumed, refused when the job changed, listed, one process per job."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from runner.errors import JobChangedError, RunLockedError, RunNotFoundError
from runner.journal import ItemRef, ItemState, Journal, RunState

OpenJob = Callable[..., Awaitable[str]]
MakeItem = Callable[..., ItemRef]


async def test_a_new_run_has_a_short_id_and_is_running(
    journal: Journal, open_job: OpenJob, job_ident: str, job_text: str
) -> None:
    """A first run gets an ID like r-20261128-ab12cd and records the job it runs."""
    run_id = await open_job(journal)
    assert re.fullmatch(r"r-\d{8}-[0-9a-f]{6}", run_id)
    run = await journal.get_run(run_id)
    assert run.state is RunState.RUNNING
    assert (run.job_name, run.job_text) == ("migration", job_text)
    assert run.job_path == job_ident
    assert "job_text" not in repr(run)


async def test_same_job_again_resumes_its_unfinished_run(
    reopen: Callable[..., Journal], job_file: Path, job_text: str
) -> None:
    """Running the same job again (same fingerprints), with the journal reopened, picks up
    the run it left unfinished."""
    text = job_text
    async with reopen() as journal:
        first = await journal.open_run("migration", str(job_file), "job-1", "config-1", text)
    async with reopen() as again:
        # The same file by another spelling of its path is the same job.
        other_spelling = job_file.parent / "." / job_file.name
        handle = await again.open_run("migration", str(other_spelling), "job-1", "config-1",
                                      text)
        assert (handle.run_id, handle.resumed, handle.config_changed) == (
            first.run_id, True, False
        )


async def test_a_finished_run_is_taken_up_again_not_repeated(
    journal: Journal, open_job: OpenJob, job_file: Path, job_text: str, item: MakeItem
) -> None:
    """Once the job's latest run finished, running the job again picks that run up (its done
    items stay done, so nothing is repeated), and the handle holds the run as it finished."""
    first = await open_job(journal)
    await journal.mark_done(first, item(0))
    await journal.finish_run(first, RunState.FINISHED)
    handle = await journal.open_run("migration", str(job_file), "job-1", "config-1", job_text)
    assert (handle.run_id, handle.resumed) == (first, True)
    assert handle.extends is not None and handle.extends.state is RunState.FINISHED
    assert handle.extends.ended_at is not None
    assert handle.extends.counts == {ItemState.DONE: 1}
    assert (await journal.get_run(first)).state is RunState.RUNNING
    states = await journal.states(first, [item(0).row_key])
    assert states[item(0).key].state is ItemState.DONE


async def test_a_changed_job_after_a_finished_run_is_refused_unless_fresh(
    journal: Journal, open_job: OpenJob, job_text: str
) -> None:
    """A finished run's job file changed: JobChangedError says the run finished and what
    --fresh costs (every row again); ``fresh`` starts a new run."""
    run = await open_job(journal)
    await journal.finish_run(run, RunState.FINISHED)
    with pytest.raises(JobChangedError) as caught:
        await open_job(journal, fingerprint="job-2", text=job_text + "\n# changed\n")
    assert "which finished" in str(caught.value) and "--fresh" in str(caught.value)
    assert (await journal.get_run(run)).state is RunState.FINISHED
    assert await open_job(journal, fingerprint="job-2", fresh=True) != run


async def test_latest_run_and_done_by_action(
    journal: Journal, open_job: OpenJob, job_file: Path, item: MakeItem
) -> None:
    """``latest_run`` names the job's newest run (None before any); ``done_by_action`` counts
    its done items per action index, nothing else."""
    assert await journal.latest_run(str(job_file)) is None
    run = await open_job(journal)
    await journal.mark_done(run, item(0, action=0))
    await journal.mark_done(run, item(1, action=0))
    await journal.mark_done(run, item(1, action=1))
    await journal.mark_failed(run, item(2, action=1), "HTTP 404")
    latest = await journal.latest_run(str(job_file))
    assert latest is not None and latest.run_id == run
    assert await journal.done_by_action(run) == {0: 2, 1: 1}


async def test_interrupted_and_failed_runs_are_resumed(journal: Journal, open_job: OpenJob) -> None:
    """A run stopped by a signal or an error is picked up again by the next run of the job."""
    run = await open_job(journal)
    for state in (RunState.INTERRUPTED, RunState.FAILED):
        await journal.finish_run(run, state)
        assert await open_job(journal) == run
        assert (await journal.get_run(run)).state is RunState.RUNNING


async def test_fresh_starts_a_new_run_and_leaves_the_old_one(
    journal: Journal, open_job: OpenJob
) -> None:
    """``fresh`` starts a new run even with an unfinished one; later runs resume the new one."""
    old = await open_job(journal)
    await journal.finish_run(old, RunState.INTERRUPTED)
    new = await open_job(journal, fresh=True)
    assert new != old
    await journal.finish_run(new, RunState.INTERRUPTED)
    assert await open_job(journal) == new
    assert [r.run_id for r in await journal.runs(5)] == [new, old]


async def test_a_changed_job_is_refused_with_what_changed(
    journal: Journal, open_job: OpenJob, job_text: str
) -> None:
    """Resuming with a different job fingerprint raises JobChangedError whose message shows
    the changed lines; ``fresh`` starts a new run instead."""
    run = await open_job(journal)
    await journal.finish_run(run, RunState.INTERRUPTED)
    changed = job_text.replace('text = "Migrated by {account_id}"', 'text = "Moved"')
    with pytest.raises(JobChangedError) as caught:
        await open_job(journal, fingerprint="job-2", text=changed)
    message = str(caught.value)
    assert run in message and "--fresh" in message
    assert '-text = "Migrated by {account_id}"' in message
    assert '+text = "Moved"' in message
    assert (await journal.get_run(run)).state is RunState.INTERRUPTED

    assert await open_job(journal, fingerprint="job-2", text=changed, fresh=True) != run


async def test_a_changed_source_with_the_same_text_is_named(
    journal: Journal, open_job: OpenJob
) -> None:
    """When the fingerprint changed but the job's text did not, the message says the rows did."""
    run = await open_job(journal)
    await journal.finish_run(run, RunState.INTERRUPTED)
    with pytest.raises(JobChangedError, match="source rows"):
        await open_job(journal, fingerprint="job-2")


async def test_a_changed_config_still_resumes(
    journal: Journal, job_file: Path, job_text: str
) -> None:
    """A config change alone does not block a resume; the handle says it changed."""
    text = job_text
    first = await journal.open_run("migration", str(job_file), "job-1", "config-1", text)
    await journal.finish_run(first.run_id, RunState.INTERRUPTED)
    handle = await journal.open_run("migration", str(job_file), "job-1", "config-2", text)
    assert (handle.run_id, handle.resumed, handle.config_changed) == (first.run_id, True, True)
    assert handle.run.config_fingerprint == "config-2"


async def test_resume_by_id(journal: Journal, open_job: OpenJob, item: MakeItem) -> None:
    """``resume`` opens a run by its ID, even a finished one; an unknown ID is an input error."""
    run = await open_job(journal)
    await journal.mark_failed(run, item(1), "HTTP 503")
    await journal.finish_run(run, RunState.FINISHED)
    handle = await journal.resume(run)
    assert (handle.run_id, handle.resumed) == (run, True)
    assert handle.run.counts[ItemState.FAILED] == 1
    with pytest.raises(RunNotFoundError):
        await journal.resume("r-20260101-000000")


async def test_one_open_run_per_job(journal: Journal, open_job: OpenJob) -> None:
    """While a job's run is open, opening the job again (fresh or not) raises RunLockedError;
    once the run is finished it can be opened again."""
    run = await open_job(journal)
    for fresh in (False, True):
        with pytest.raises(RunLockedError) as caught:
            await open_job(journal, fresh=fresh)
        assert run in str(caught.value)
    with pytest.raises(RunLockedError):
        await journal.resume(run)
    await journal.finish_run(run, RunState.INTERRUPTED)
    assert await open_job(journal) == run


async def test_each_run_a_process_opens_holds_its_own_job_lock(
    reopen: Callable[..., Journal], tmp_path: Path, job_text: str
) -> None:
    """Two runs of two jobs opened on one journal (as `serve` opens every triggered run) are
    each refused to another opener of the same file, and finishing one frees only that job."""
    jobs = [tmp_path / "first.toml", tmp_path / "second.toml"]
    for path in jobs:
        path.write_text(job_text)
    async with reopen() as journal, reopen() as other:
        runs = [await journal.open_run(p.stem, str(p), "j", "c", job_text) for p in jobs]
        for path, handle in zip(jobs, runs, strict=True):
            with pytest.raises(RunLockedError) as refused:
                await other.open_run(path.stem, str(path), "j", "c", job_text)
            assert refused.value.run_id == handle.run_id
            with pytest.raises(RunLockedError):
                await other.resume(handle.run_id)

        await journal.finish_run(runs[0].run_id, RunState.INTERRUPTED)
        again = await other.open_run("first", str(jobs[0]), "j", "c", job_text)
        assert again.run_id == runs[0].run_id and again.resumed
        with pytest.raises(RunLockedError):
            await other.open_run("second", str(jobs[1]), "j", "c", job_text)
        await journal.mark_started(runs[1].run_id, ItemRef("row-1", 0, "acme", "5ca1ab1e", "a"))
