"""A run killed in the middle of issue creates and resumed at once, while search still lags.

Recovery looks for an issue whose create lost its answer with ``search/jql``, which is
eventually consistent. The sandbox is served with a search lag; the runner must not take "not
found" for "missing" while the issue may only be unindexed.

Each kill moment is picked by an event of the sandbox (a request's arrival, an issue made), never
by a sleep: ``ArrivalWatch`` calls back while the request is on the wire.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from runner.actions import ITEM_PROPERTY_KEY
from runner.journal import ItemState, SqliteJournal
from runner.sandbox.app import RunningSandbox, serve
from runner.sandbox.jira.state import Issue
from runner.sandbox.testing import CLOUD_A
from tests.e2e.harness import (
    ArrivalWatch,
    Exit,
    Process,
    Rehearsal,
    account,
    bulk_sandbox_config,
    run_id_of,
)

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


def _rows(count: int = ROWS, users: int = 8) -> list[dict[str, str]]:
    return [{"legacy_id": f"LEG-{n:03d}", "account_id": account(n % users)}
            for n in range(count)]


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


class _MadeIssues(dict[str, Issue]):
    """A site's issues, calling ``on_made`` once the request that made an issue is answered."""

    def __init__(self, issues: dict[str, Issue], on_made: Callable[[], None]) -> None:
        super().__init__(issues)
        self.on_made = on_made

    def __setitem__(self, key: str, issue: Issue) -> None:
        super().__setitem__(key, issue)
        # The endpoint answers, and aiohttp writes the answer, without giving the loop a turn:
        # a callback scheduled now runs once the answer has been handed to the connection.
        asyncio.get_running_loop().call_soon(self.on_made)


class _Moments:
    """The five kill moments, each one process of the job killed with SIGKILL at that moment."""

    def __init__(self, rehearsal: Rehearsal, job: Path) -> None:
        self.rehearsal = rehearsal
        self.job = job
        self.sandbox = rehearsal.sandbox

    async def _killed(self, arm: Callable[[Process], None]) -> Exit:
        process = await self.rehearsal.spawn("run", self.job)
        arm(process)
        ended = await process.wait()
        assert ended.code == -signal.SIGKILL, ended.text
        return ended

    def _kill(self, process: Process) -> Callable[[], None]:
        return lambda: process.signal(signal.SIGKILL)

    async def on_the_wire(self, nth: int) -> Exit:
        """At the ``nth`` create's arrival: the sandbox makes the issue after the runner died,
        so the answer is lost."""
        return await self._killed(
            lambda p: ArrivalWatch.install(self.sandbox, {CREATE_ROUTE}).at(nth, self._kill(p)))

    async def never_reached_jira(self, nth: int) -> Exit:
        """At the ``nth`` create's arrival, which the sandbox then ends with a 503 before any
        effect: the item is journaled ``started`` and nothing was made, as when the runner
        dies between journaling ``started`` and sending."""
        def arm(process: Process) -> None:
            def kill_and_refuse() -> None:
                process.signal(signal.SIGKILL)
                raise web.HTTPServiceUnavailable()

            ArrivalWatch.install(self.sandbox, {CREATE_ROUTE}).at(nth, kill_and_refuse)

        return await self._killed(arm)

    async def looking_up(self) -> Exit:
        """At the resume's first ``search/jql`` look-up for a create cut short before."""
        return await self._killed(
            lambda p: ArrivalWatch.install(self.sandbox, {SEARCH_ROUTE}).at(1, self._kill(p)))

    async def answered_not_durable(self, nth: int) -> Exit:
        """From the ``nth`` create's arrival the journal's write lock is held by another
        connection (the runner's commit of ``done`` and the next ``started`` waits); killed once
        the sandbox has answered every create that arrived: made in Jira, not ``done``."""
        site = self.rehearsal.jira.site(CLOUD_A)
        blocker = sqlite3.connect(self.rehearsal.journal_path, isolation_level=None)
        answered = asyncio.Event()
        made = 0
        watch = ArrivalWatch({CREATE_ROUTE})

        def one_made() -> None:
            nonlocal made
            made += 1
            if watch.seen >= nth and made >= watch.seen:
                answered.set()

        def hold_the_lock() -> None:
            blocker.execute("BEGIN IMMEDIATE")

        def arm(process: Process) -> None:
            async def kill_when_answered() -> None:
                await answered.wait()
                process.signal(signal.SIGKILL)

            self.sandbox.world.jira_arrivals = watch
            site.issues = _MadeIssues(site.issues, one_made)
            watch.at(nth, hold_the_lock)
            tasks.append(asyncio.ensure_future(kill_when_answered()))

        tasks: list[asyncio.Future[None]] = []
        try:
            return await self._killed(arm)
        finally:
            for task in tasks:
                task.cancel()
            site.issues = dict(site.issues)
            blocker.close()  # its transaction ends with it

    async def while_waiting_out_search(self) -> Exit:
        """At the first create of the resume that arrives after its first look-up: that
        look-up found nothing (search lags), so its item waits out ``search_settle_s`` while
        other users' rows go on."""
        def arm(process: Process) -> None:
            def then_at_the_next_create() -> None:
                ArrivalWatch.install(self.sandbox, {CREATE_ROUTE}).at(1, self._kill(process))

            ArrivalWatch.install(self.sandbox, {SEARCH_ROUTE}).at(1, then_at_the_next_create)

        return await self._killed(arm)


async def _started_but_made(rehearsal: Rehearsal, run_id: str, rows: list[dict[str, str]]
                            ) -> set[str]:
    """Items Jira has made an issue for that the journal holds only as ``started``."""
    async with SqliteJournal(rehearsal.journal_path, create=False) as journal:
        states = await journal.states(run_id, [row["legacy_id"] for row in rows])
    made = _issues_by_item(rehearsal)
    return {key for key, r in states.items() if r.state == ItemState.STARTED and key in made}


async def test_five_kill_moments_each_resumed_at_once_make_each_issue_once(
    tmp_path: Path, lagging: RunningSandbox
) -> None:
    """Under a 5 s search lag, a run of ``issue.create`` rows killed (SIGKILL) at five moments,
    each followed at once by a resume (the same command), leaves exactly one issue per row:
    a create on the wire; one journaled ``started`` that never reached Jira; the resume's
    look-up on the wire; creates answered while their ``done`` waited for the journal (several
    users' in one commit); a resume whose item waits out ``search_settle_s``."""
    rows = _rows(96, users=24)
    rehearsal = Rehearsal.start(tmp_path, lagging, concurrency=8)
    _with_settle(rehearsal, 6.0)
    job = rehearsal.write_job("creates", rows, ACTIONS)
    moments = _Moments(rehearsal, job)

    first = await moments.on_the_wire(10)
    run_id = run_id_of(first)
    killed = [first, await moments.never_reached_jira(3), await moments.looking_up()]
    killed.append(await moments.answered_not_durable(4))
    # Made by Jira, answered, and still only `started`: the moment was what it says.
    assert await _started_but_made(rehearsal, run_id, rows)
    killed.append(await moments.while_waiting_out_search())
    assert all("resuming run" in k.out for k in killed[1:]), [k.text for k in killed]
    assert {run_id_of(k) for k in killed} == {run_id}

    rehearsal.sandbox.world.jira_arrivals = None
    final = await rehearsal.cli("run", job)
    assert final.code == 0, final.text
    assert "resuming run" in final.out and run_id_of(final) == run_id
    issues = _issues_by_item(rehearsal)
    assert {key: n for key, n in issues.items() if n != 1} == {}
    assert set(issues) == {f"{row['legacy_id']}#0" for row in rows}
    # Creates cut short were looked up, and some looked up too early were looked for again.
    assert lagging.world.jira_calls[SEARCH_ROUTE] > 0
    assert "runner.item.recheck_later" in final.err + "".join(k.err for k in killed)


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
