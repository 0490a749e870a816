"""Items' states, as every journal (SQLite on a file, PostgreSQL, in memory) records them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from runner.errors import JournalError
from runner.journal import ItemRef, ItemState, Journal, ReasonCount, RunState

MakeItem = Callable[..., ItemRef]
OpenJob = Callable[..., Awaitable[str]]


async def test_started_then_done_keeps_the_result(
    journal: Journal, open_job: OpenJob, item: MakeItem
) -> None:
    """An item moves started -> done; done keeps what Jira returned and the attempt count."""
    run = await open_job(journal)
    first = item(1)
    await journal.mark_started(run, first)
    started = (await journal.states(run, [first.row_key]))[first.key]
    assert (started.state, started.attempts, started.result) == (ItemState.STARTED, 1, None)

    await journal.mark_done(run, first, {"id": "10001", "key": "MIG-7"})
    done = (await journal.states(run, [first.row_key]))[first.key]
    assert done.state is ItemState.DONE
    assert done.result == {"id": "10001", "key": "MIG-7"}
    assert (done.attempts, done.site, done.account_id, done.action) == (
        1, "acme", first.account_id, "comment.add"
    )


async def test_each_start_counts_an_attempt(
    journal: Journal, open_job: OpenJob, item: MakeItem
) -> None:
    """Starting an item again (a retry, or a resume) adds one to its attempts."""
    run = await open_job(journal)
    one = item(1)
    await journal.mark_started(run, one)
    await journal.mark_uncertain(run, one, "timeout", detail="no answer after 30s")
    for expected in (2, 3):
        await journal.mark_started(run, one)
        assert (await journal.states(run, [one.row_key]))[one.key].attempts == expected


async def test_submit_done_is_durable_once_a_later_write_returns(
    journal: Journal, open_job: OpenJob, item: MakeItem
) -> None:
    """``submit_done`` queues at once: when a write made after it returns, the done is
    recorded (writes are durable in the order they are made), and awaiting it returns."""
    run = await open_job(journal)
    first, second = item(1), item(2)
    await journal.mark_started(run, first)
    pending = journal.submit_done(run, first, {"id": "10001"})
    await journal.mark_started(run, second)
    got = await journal.states(run, [first.row_key, second.row_key])
    assert (got[first.key].state, got[first.key].result) == (ItemState.DONE, {"id": "10001"})
    assert got[second.key].state is ItemState.STARTED
    assert await pending is None


async def test_submit_done_of_a_done_item_fails_its_own_awaitable(
    journal: Journal, open_job: OpenJob, item: MakeItem
) -> None:
    """A done item journaled done again is accepted (done stays done); a refused move queued
    beside a done fails alone."""
    run = await open_job(journal)
    first, second = item(1), item(2)
    await journal.mark_started(run, first)
    await journal.mark_done(run, first)
    again = journal.submit_done(run, first, {"id": "1"})
    refused = journal.mark_failed(run, first, "HTTP 500")
    other = journal.submit_done(run, second)
    results = await asyncio.gather(again, refused, other, return_exceptions=True)
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], JournalError)
    got = await journal.states(run, [first.row_key, second.row_key])
    assert got[first.key].state is got[second.key].state is ItemState.DONE


async def test_done_is_final(journal: Journal, open_job: OpenJob, item: MakeItem) -> None:
    """A done item can't be started or failed again: it must never be sent twice."""
    run = await open_job(journal)
    one = item(1)
    await journal.mark_started(run, one)
    await journal.mark_done(run, one, {"id": "1"})
    with pytest.raises(JournalError, match="already done"):
        await journal.mark_started(run, one)
    with pytest.raises(JournalError, match="already done"):
        await journal.mark_failed(run, one, "HTTP 500")
    assert (await journal.states(run, [one.row_key]))[one.key].state is ItemState.DONE


async def test_outcomes_record_reason_and_detail(
    journal: Journal, open_job: OpenJob, item: MakeItem
) -> None:
    """Failed, skipped, blocked and uncertain items keep their reason and detail; a later
    success clears them."""
    run = await open_job(journal)
    marks = [
        (journal.mark_failed, ItemState.FAILED),
        (journal.mark_skipped, ItemState.SKIPPED),
        (journal.mark_blocked, ItemState.BLOCKED),
        (journal.mark_uncertain, ItemState.UNCERTAIN),
    ]
    for row, (mark, _) in enumerate(marks):
        await mark(run, item(row), f"reason {row}", detail=f"detail {row}")
    got = await journal.states(run, [item(row).row_key for row in range(len(marks))])
    for row, (_, state) in enumerate(marks):
        record = got[item(row).key]
        assert (record.state, record.reason, record.detail) == (
            state, f"reason {row}", f"detail {row}"
        )

    await journal.mark_started(run, item(3))
    await journal.mark_done(run, item(3))
    done = (await journal.states(run, [item(3).row_key]))[item(3).key]
    assert (done.state, done.reason, done.detail) == (ItemState.DONE, None, None)


async def test_states_answers_for_many_rows_at_once(
    journal: Journal, open_job: OpenJob, item: MakeItem
) -> None:
    """``states`` returns every recorded item of the rows asked (over several internal
    batches), keyed by item key; rows never touched are absent, i.e. pending."""
    run = await open_job(journal)
    for row in range(0, 1200, 2):  # even rows touched, two actions each
        await journal.mark_started(run, item(row, 0))
        await journal.mark_done(run, item(row, 0))
        await journal.mark_started(run, item(row, 1))
    asked = [item(row).row_key for row in range(1200)]
    got = await journal.states(run, asked)
    assert len(got) == 1200
    assert got[item(998, 0).key].state is ItemState.DONE
    assert got[item(998, 1).key].state is ItemState.STARTED
    assert item(999, 0).key not in got


async def test_records_stream_every_item_of_the_states_asked(
    journal: Journal, open_job: OpenJob, item: MakeItem
) -> None:
    """``records`` yields each item in the states asked once, in key order, across pages."""
    run = await open_job(journal)
    for row in range(1100):
        await journal.mark_failed(run, item(row), "HTTP 404")
    await journal.mark_skipped(run, item(5000), "user deactivated")
    await journal.mark_started(run, item(6000))

    failed = [r.row_key async for r in journal.records(run, ["failed"])]
    assert failed == [item(row).row_key for row in range(1100)]
    problems = [r.state async for r in journal.records(run)]
    assert sorted(problems) == sorted([ItemState.FAILED] * 1100 + [ItemState.SKIPPED])


async def test_requeue_puts_failed_items_back_in_line(
    journal: Journal, open_job: OpenJob, item: MakeItem
) -> None:
    """``requeue`` turns failed items pending (reason cleared), leaves others alone, and
    reopens a finished run so the next run of the job resumes it."""
    run = await open_job(journal)
    await journal.mark_failed(run, item(1), "HTTP 503")
    await journal.mark_failed(run, item(2), "HTTP 503")
    await journal.mark_skipped(run, item(3), "user deactivated")
    await journal.mark_started(run, item(4))
    await journal.mark_done(run, item(4))
    await journal.finish_run(run, RunState.FINISHED)

    assert await journal.requeue(run, ["failed"]) == 2
    got = await journal.states(run, [item(n).row_key for n in range(1, 5)])
    assert [got[item(n).key].state for n in range(1, 5)] == [
        ItemState.PENDING, ItemState.PENDING, ItemState.SKIPPED, ItemState.DONE
    ]
    assert got[item(1).key].reason is None
    assert (await journal.get_run(run)).state is RunState.INTERRUPTED
    assert await open_job(journal) == run


async def test_requeue_refuses_done_and_uncertain(journal: Journal, open_job: OpenJob) -> None:
    """Done items are never redone, and uncertain ones must be checked, not blindly resent."""
    run = await open_job(journal)
    for states in (["done"], ["uncertain"], ["failed", "started"]):
        with pytest.raises(JournalError, match="cannot requeue"):
            await journal.requeue(run, states)


async def test_counts_by_state_site_and_reason(
    journal: Journal, open_job: OpenJob, item: MakeItem
) -> None:
    """``counts`` gives pending as planned minus journaled, per-site counts, and reasons
    counted, commonest first."""
    run = await open_job(journal)
    await journal.set_total(run, 20)
    for row in range(4):
        await journal.mark_started(run, item(row))
        await journal.mark_done(run, item(row))
    for row in range(4, 7):
        await journal.mark_failed(run, item(row, site="globex"), "HTTP 404")
    await journal.mark_failed(run, item(7), "HTTP 400")
    await journal.mark_skipped(run, item(8), "user deactivated")
    await journal.mark_started(run, item(9))

    counts = await journal.counts(run)
    assert counts.by_state == {
        ItemState.PENDING: 10,
        ItemState.STARTED: 1,
        ItemState.DONE: 4,
        ItemState.FAILED: 4,
        ItemState.SKIPPED: 1,
        ItemState.BLOCKED: 0,
        ItemState.UNCERTAIN: 0,
    }
    assert counts.by_site == {
        "acme": {ItemState.DONE: 4, ItemState.FAILED: 1, ItemState.SKIPPED: 1,
                 ItemState.STARTED: 1},
        "globex": {ItemState.FAILED: 3},
    }
    assert list(counts.by_reason) == [
        ReasonCount(ItemState.FAILED, "HTTP 404", 3),
        ReasonCount(ItemState.FAILED, "HTTP 400", 1),
        ReasonCount(ItemState.SKIPPED, "user deactivated", 1),
    ]
    assert (await journal.runs(1))[0].counts[ItemState.DONE] == 4


async def test_writes_need_the_run_open_here(
    journal: Journal, open_job: OpenJob, item: MakeItem
) -> None:
    """Items can be written only to a run this journal opened and has not finished."""
    run = await open_job(journal)
    await journal.finish_run(run, "finished")
    with pytest.raises(JournalError, match="not open"):
        await journal.mark_started(run, item(1))
