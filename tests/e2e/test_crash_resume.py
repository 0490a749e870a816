"""A real `forge-runner run` killed at random moments and run again: nothing lost, nothing twice
(on the SQLite journal and on the PostgreSQL one).

The job: 1,000 rows x (``comment.add``, ``issue.property.set``) = 2,000 items, 100 synthetic
users over 50 issues of the sandbox served by the test. A kill moment is the N-th write request
arriving at the sandbox (N drawn from a seeded generator, printed so a failure can be replayed
with ``FORGE_RUNNER_E2E_SEED``): the process is signalled while that request is on the wire.
"""

from __future__ import annotations

import functools
import os
import random
import signal
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from runner.journal import ItemRecord, ItemState
from runner.journal.open import open_journal
from runner.sandbox.app import RunningSandbox, serve
from runner.sandbox.testing import CLOUD_A
from tests.e2e.harness import (
    ArrivalWatch,
    Rehearsal,
    account,
    bulk_sandbox_config,
    comments_by_item,
    run_id_of,
)

COMMENT_LOOKUP = "GET /rest/api/3/issue/{issueIdOrKey}/comment"
ROWS = 1000
USERS = 100
ISSUES = 50
ACTIONS = """\
[[actions]]
type = "comment.add"
issue = "{issue}"
body = "Migrated {legacy_id}: {note}"

[[actions]]
type = "issue.property.set"
issue = "{issue}"
key = "legacy-{legacy_id}"
value = { id = "{legacy_id}", note = "{note}" }
"""

pytestmark = pytest.mark.slow


def _rows() -> list[dict[str, str]]:
    return [
        {
            "legacy_id": f"LEG-{n:04d}",
            "account_id": account(n % USERS),
            "issue": f"MIG-{n % ISSUES + 1}",
            "note": f"note {n} from the legacy tracker",
        }
        for n in range(ROWS)
    ]


def _seed() -> int:
    given = os.environ.get("FORGE_RUNNER_E2E_SEED")
    seed = int(given) if given else random.SystemRandom().randrange(2**32)
    print(f"kill moments drawn with FORGE_RUNNER_E2E_SEED={seed}")
    return seed


@pytest.fixture
async def sandbox() -> AsyncIterator[RunningSandbox]:
    async with serve(bulk_sandbox_config(ISSUES), port=0) as running:
        yield running


@pytest.fixture
def rehearsal(tmp_path: Path, sandbox: RunningSandbox, journal_url: str | None) -> Rehearsal:
    """On the SQLite journal and on the PostgreSQL one."""
    return Rehearsal.start(tmp_path, sandbox, journal_url=journal_url)


async def _journal_items(rehearsal: Rehearsal, run_id: str,
                         rows: Sequence[dict[str, str]]) -> dict[str, ItemRecord]:
    async with open_journal(rehearsal.journal_target, create=False) as journal:
        return dict(await journal.states(run_id, [row["legacy_id"] for row in rows]))


def _assert_everything_done_once(rehearsal: Rehearsal, items: dict[str, ItemRecord],
                                 rows: Sequence[dict[str, str]]) -> None:
    """Each comment exists once, on its issue, with its text, and is the one the journal
    recorded; each property holds its value; every item is done."""
    assert len(items) == 2 * len(rows)
    not_done = {key: (r.state, r.reason) for key, r in items.items() if r.state != "done"}
    assert not not_done
    comments = comments_by_item(rehearsal.jira)
    duplicated = {key: n for key, n in comments.items() if n != 1}
    assert not duplicated, f"comments made more than once: {duplicated}"
    assert set(comments) == {f"{row['legacy_id']}#0" for row in rows}
    for row in rows:
        issue = rehearsal.jira.issue(CLOUD_A, row["issue"])
        assert issue is not None
        mine = [c for c in issue.comments
                if c.properties.get("forge-runner.item") == {"item": f"{row['legacy_id']}#0"}]
        assert len(mine) == 1
        assert f"Migrated {row['legacy_id']}: {row['note']}" in str(mine[0].body)
        assert mine[0].author == row["account_id"]
        recorded = items[f"{row['legacy_id']}#0"].result
        assert recorded is not None and recorded["id"] == mine[0].id
        assert issue.properties[f"legacy-{row['legacy_id']}"] == {
            "id": row["legacy_id"], "note": row["note"]}


async def test_five_sigkills_then_resume_lose_nothing_and_repeat_nothing(
    rehearsal: Rehearsal,
) -> None:
    """Killed with SIGKILL at five random moments and run again each time, the job ends with
    every comment made exactly once and every property set, all items done in one run."""
    rows = _rows()
    job = rehearsal.write_job("crash", rows, ACTIONS)
    watch = ArrivalWatch.install(rehearsal.sandbox)
    rng = random.Random(_seed())
    # Counted from each process's start (a cumulative moment could already have passed, the
    # killed run's requests on the wire still arriving): five runs need at most 1,900 writes.
    moments = rng.sample(range(20, (2 * ROWS - 100) // 5), 5)
    print(f"SIGKILL at write arrivals {moments} of each run")

    run_ids = set()
    for moment in moments:
        process = await rehearsal.spawn("run", job)
        watch.after(moment, functools.partial(process.signal, signal.SIGKILL))
        ended = await process.wait()
        assert ended.code == -signal.SIGKILL, ended.text
        run_ids.add(run_id_of(ended))
    final = await rehearsal.cli("run", job)
    assert final.code == 0, final.text
    assert "resuming run" in final.out
    run_ids.add(run_id_of(final))
    assert len(run_ids) == 1, f"every run resumed the first one: {run_ids}"
    assert watch.seen >= 2 * ROWS
    # Comments on the wire at a kill were looked up on resume rather than sent blind.
    lookups = rehearsal.sandbox.world.jira_calls[COMMENT_LOOKUP]
    print(f"{watch.seen} writes arrived; {lookups} comment look-ups")
    assert lookups > 0

    items = await _journal_items(rehearsal, run_ids.pop(), rows)
    _assert_everything_done_once(rehearsal, items, rows)


async def test_sigterm_drains_and_the_resumed_run_finishes_without_uncertain_items(
    rehearsal: Rehearsal,
) -> None:
    """A first SIGTERM at a random moment drains (exit 143, nothing left started or
    uncertain); after three such interruptions the job finishes with nothing duplicated."""
    rows = _rows()
    job = rehearsal.write_job("drain", rows, ACTIONS)
    watch = ArrivalWatch.install(rehearsal.sandbox)
    rng = random.Random(_seed())
    # Counted from each process's start: a moment counted from the job's start could already
    # have passed (the drain before finishes what was on the wire) and signal a process that
    # has not yet installed its handlers.
    moments = rng.sample(range(20, (2 * ROWS - 200) // 3), 3)
    print(f"SIGTERM at write arrivals {moments} of each run")

    run_id = None
    for moment in moments:
        process = await rehearsal.spawn("run", job)
        watch.after(moment, functools.partial(process.signal, signal.SIGTERM))
        ended = await process.wait()
        assert ended.code == 143, ended.text
        assert "runner.shutdown.draining" in ended.err
        assert "interrupted; run the same command again to resume" in ended.out
        run_id = run_id or run_id_of(ended)
        assert run_id_of(ended) == run_id
        items = await _journal_items(rehearsal, run_id, rows)
        open_items = {key: r.state for key, r in items.items()
                      if r.state in (ItemState.STARTED, ItemState.UNCERTAIN)}
        assert not open_items, "a drain journals every request it sent"
        # Whatever the journal calls done is in the sandbox, exactly once.
        comments = comments_by_item(rehearsal.jira)
        done = {key for key, r in items.items() if r.state == "done" and key.endswith("#0")}
        assert set(comments) == done and set(comments.values()) <= {1}

    final = await rehearsal.cli("run", job)
    assert final.code == 0, final.text
    assert run_id_of(final) == run_id
    items = await _journal_items(rehearsal, run_id, rows)
    assert not [key for key, r in items.items() if r.state == ItemState.UNCERTAIN]
    _assert_everything_done_once(rehearsal, items, rows)
