"""The JSON report: schema, counts, streamed items, atomic write, no secrets."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.events import (
    ItemDone,
    ItemFailed,
    ItemSkipped,
    ItemUncertain,
    JiraCall,
    JiraRateLimited,
    MintContextRefused,
    MintOk,
)
from runner.logs.redact import register_secret
from runner.progress import MintBudget, RunStats
from runner.progress.report import SCHEMA, ReportItem, RunInfo, write_report, write_report_async
from tests.fakes import EPOCH, FakeClock


@pytest.fixture
def stats() -> RunStats:
    """A finished run: 3 done, 1 failed, 1 skipped; two mints; a 429; a pause still active."""
    clock = FakeClock()
    s = RunStats(total=5, budgets={"prod": MintBudget(1000, 60.0)}, clock=clock.monotonic,
                 wall=clock.wall)
    for n in range(3):
        clock.advance(2.0)
        s.event(ItemDone(site="alpha", account=f"a{n}", row=str(n), action="myself"))
    s.event(MintOk(environment="prod", site="alpha", account="a0"))
    s.event(MintOk(environment="prod", site="alpha", account="a1"))
    s.event(ItemFailed(site="alpha", account="a1", row="3", action="comment.add",
            reason="404 Issue does not exist"))
    s.event(ItemSkipped(site="beta", account="a2", row="4", action="myself",
            reason="user deactivated"))
    s.event(JiraRateLimited(site="alpha", scope="quota:global",
            reason="jira-quota-global-based", until=EPOCH + 3600))
    s.event(JiraCall(site="alpha", method="GET", template="/myself", status=200))
    clock.advance(4.0)
    s.finish()
    return s


def _read(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def test_report_holds_run_timings_counts_mints_and_limits(stats: RunStats, tmp_path: Path) -> None:
    """The report names the run and job and carries timings, counts, mints and 429s."""
    info = RunInfo(run_id="run-7", job="jobs/example.toml", config="config.toml", exit_code=1,
                   lower_bound_s=5.0)
    path = write_report(tmp_path / "out" / "report.json", stats, info)
    data = _read(path)
    assert data["schema"] == SCHEMA
    assert (data["run_id"], data["job"], data["config"]) == ("run-7", "jobs/example.toml",
                                                            "config.toml")
    assert data["exit_code"] == 1 and data["dry_run"] is False
    assert data["timings"] == {
        "started_at": "2027-01-15T08:00:00Z",
        "ended_at": "2027-01-15T08:00:10Z",
        "duration_s": 10.0,
        "lower_bound_s": 5.0,
        "duration_over_lower_bound": 2.0,
    }
    assert data["counts"] == {"total": 5, "finished": 5, "done": 3, "failed": 1, "skipped": 1,
                              "blocked": 0, "uncertain": 0}
    assert data["sites"]["beta"]["skipped"] == 1
    assert data["mints"]["total"] == 2
    assert data["mints"]["buckets"] == {"prod": {"used": 2, "limit": 1000, "window_s": 60.0}}
    assert data["rate_limits"] == {
        "total": 1,
        "by_scope": [{"kind": "quota", "reason": "jira-quota-global-based", "count": 1}],
    }
    assert data["pauses"]["active_at_end"] == [{"scope": "quota:global",
                                                "reason": "jira-quota-global-based",
                                                "until": "2027-01-15T09:00:00Z"}]
    assert data["jira_calls"] == {"2xx": 1}
    assert data["failures_by_reason"] == [
        {"state": "failed", "reason": "404 Issue does not exist", "count": 1},
        {"state": "skipped", "reason": "user deactivated", "count": 1},
    ]
    assert data["items"] == []


def test_report_streams_each_item_given(stats: RunStats, tmp_path: Path) -> None:
    """Items from an iterator (records or mappings) are written one by one, in order."""

    def journal_rows() -> Iterator[ReportItem | dict[str, Any]]:
        yield ReportItem("failed", "alpha", "a1", 3, "comment.add", "404 Issue does not exist",
                         detail={"errorMessages": ["Issue does not exist"]})
        yield {"state": "skipped", "site": "beta", "account": "a2", "row": 4, "action": "myself",
               "reason": "user deactivated"}

    data = _read(write_report(tmp_path / "r.json", stats, RunInfo("r", "j"), journal_rows()))
    assert data["items"] == [
        {"state": "failed", "site": "alpha", "account": "a1", "row": 3, "action": "comment.add",
         "reason": "404 Issue does not exist",
         "detail": {"errorMessages": ["Issue does not exist"]}},
        {"state": "skipped", "site": "beta", "account": "a2", "row": 4, "action": "myself",
         "reason": "user deactivated"},
    ]


def test_report_contains_no_secret(stats: RunStats, tmp_path: Path) -> None:
    """Registered tokens and credential-shaped values never reach the report file."""
    token = "tok-" + secrets.token_urlsafe(24)
    register_secret(token)
    stats.event(ItemUncertain(site="alpha", account="a", row="9", action="issue.create",
                reason=f"timeout, sent with {token}"))
    stats.event(MintContextRefused(environment="prod", aris=(), message=f"refused {token}"))
    items = [ReportItem("uncertain", "alpha", "a", 9, "issue.create", f"timeout {token}",
                        detail={"headers": {"Authorization": "Bearer abc"}, "token": "x1"})]
    path = write_report(tmp_path / "r.json", stats, RunInfo(f"run {token}", "j"), items)
    text = path.read_text(encoding="utf-8")
    assert token not in text and "Bearer abc" not in text
    data = json.loads(text)
    assert data["items"][0]["detail"] == {"headers": {"Authorization": "[REDACTED]"},
                                          "token": "[REDACTED]"}
    assert data["run_id"] == "run [REDACTED]"


def test_report_replaces_atomically(stats: RunStats, tmp_path: Path) -> None:
    """A failure while writing leaves the previous report whole and no temporary file."""
    path = tmp_path / "r.json"
    write_report(path, stats, RunInfo("first", "j"))

    def broken() -> Iterator[ReportItem]:
        yield ReportItem("failed", "alpha", "a", 1, "x", "r")
        raise OSError("journal went away")

    with pytest.raises(OSError, match="journal went away"):
        write_report(path, stats, RunInfo("second", "j"), broken())
    assert _read(path)["run_id"] == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


async def test_async_report_streams_journal_records(stats: RunStats, tmp_path: Path) -> None:
    """write_report_async writes the journal's own records from an async iterator."""
    from runner.journal.base import ItemRecord, ItemState

    token = "tok-" + secrets.token_urlsafe(24)
    register_secret(token)

    async def records() -> AsyncIterator[ItemRecord]:
        for n in range(1200):  # more than one write batch
            yield ItemRecord(run_id="r", row_key=f"row-{n}", action_index=0, action="myself",
                             state=ItemState.FAILED, attempts=1, reason="HTTP 404",
                             detail=f"errorMessages: [no issue] {token}", result=None,
                             site="alpha", account_id=f"acc-{n}", updated_at=EPOCH)

    path = await write_report_async(tmp_path / "r.json", stats, RunInfo("r", "j"), records())
    text = path.read_text(encoding="utf-8")
    assert token not in text
    items = json.loads(text)["items"]
    assert len(items) == 1200
    assert items[0]["state"] == "failed" and items[0]["row_key"] == "row-0"
    assert items[-1]["account_id"] == "acc-1199"
    assert items[0]["message"] == "errorMessages: [no issue] [REDACTED]"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


async def test_async_report_failure_leaves_no_file(stats: RunStats, tmp_path: Path) -> None:
    """When the async source fails, no report and no temporary file is left behind."""

    async def broken() -> AsyncIterator[dict[str, str]]:
        yield {"state": "failed", "reason": "x"}
        raise RuntimeError("journal closed")

    with pytest.raises(RuntimeError, match="journal closed"):
        await write_report_async(tmp_path / "r.json", stats, RunInfo("r", "j"), broken())
    assert list(tmp_path.iterdir()) == []


def test_report_refuses_items_it_cannot_read(stats: RunStats, tmp_path: Path) -> None:
    """An item that is neither a dataclass nor a mapping is an error naming its type."""
    with pytest.raises(TypeError, match="found int"):
        write_report(tmp_path / "r.json", stats, RunInfo("r", "j"), [42])
