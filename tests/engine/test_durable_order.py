"""Principle 5 as the sandbox sees it: when a request of an item arrives, that item is already
journaled ``started``, and the user's action before it is already journaled ``done``, in the
journal file, committed (read from another connection at the moment of arrival)."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

from runner.config.configfile import load_config
from runner.engine.engine import Engine
from runner.job.jobfile import load_job
from runner.journal import ItemState, SqliteJournal
from runner.sandbox.config import SandboxConfig, SandboxIssue
from runner.sandbox.testing import (
    MIGRATION_ACTIONS,
    StartSandbox,
    pattern_account,
    write_runner_config,
)
from runner.sandbox.world import JiraArrival

ROWS = 40

JOB = f"""name = "order"
site = "acme"
row_key = "legacy_id"

[source]
csv = "rows.csv"

{MIGRATION_ACTIONS}"""

COMMENT = "POST /rest/api/3/issue/{issueIdOrKey}/comment"
PROPERTY = "PUT /rest/api/3/issue/{issueIdOrKey}/properties/{propertyKey}"


class JournalAtArrival(list[JiraArrival]):
    """The sandbox's arrival log, reading the journal's committed state of the arriving
    request's row (one row per issue) as each request arrives, before it is served."""

    def __init__(self, journal_file: Path) -> None:
        super().__init__()
        self.journal_file = journal_file
        self.seen: list[tuple[str, str, dict[int, str]]] = []  # (route, row, action -> state)

    def append(self, arrival: JiraArrival) -> None:
        super().append(arrival)
        if arrival.route not in (COMMENT, PROPERTY) or arrival.issue is None:
            return
        row = f"L{int(arrival.issue.split('-')[1]):04d}"
        conn = sqlite3.connect(self.journal_file)
        try:
            states = dict(conn.execute(
                "SELECT action_index, state FROM items WHERE row_key = ?", (row,)
            ).fetchall())
        finally:
            conn.close()
        self.seen.append((arrival.route, row, states))


async def test_started_and_the_previous_done_are_committed_before_a_request_arrives(
    tmp_path: Path, sandbox_config: SandboxConfig, start_sandbox: StartSandbox
) -> None:
    """Each comment arrives with its item journaled started; each property set arrives with
    its own item started and the row's comment done: the done was queued without waiting,
    yet committed no later than the started that the request waited for."""
    acme = dataclasses.replace(
        sandbox_config.sites["acme"],
        issues=tuple(SandboxIssue(f"MIG-{n}", "MIG") for n in range(1, ROWS + 1)),
    )
    config = dataclasses.replace(sandbox_config, sites={**sandbox_config.sites, "acme": acme})
    async with start_sandbox(config) as sb:
        cfg = load_config(write_runner_config(tmp_path, sb, concurrency=8))
        rows = ["legacy_id,account_id,issue"]
        rows += [f"L{n:04d},{pattern_account(n % 10)},MIG-{n}" for n in range(1, ROWS + 1)]
        (tmp_path / "rows.csv").write_text("\n".join(rows) + "\n")
        (tmp_path / "job.toml").write_text(JOB)
        job = load_job(tmp_path / "job.toml", cfg)
        journal_file = tmp_path / "journal.db"
        watch = JournalAtArrival(journal_file)
        sb.world.jira_arrivals = watch
        async with SqliteJournal(journal_file) as journal:
            handle = await journal.open_run(job.name, str(job.path), job.fingerprint,
                                            cfg.fingerprint, job.text)
            await journal.set_total(handle.run_id, 2 * ROWS)
            result = await Engine(cfg, job, journal).run(handle)
        assert result.counts[ItemState.DONE] == 2 * ROWS
    comments = [states for route, _, states in watch.seen if route == COMMENT]
    properties = [states for route, _, states in watch.seen if route == PROPERTY]
    assert len(comments) == len(properties) == ROWS
    assert all(states.get(0) == "started" for states in comments)
    assert all(states.get(0) == "done" and states.get(1) == "started" for states in properties)
