"""RunStats: counts, mints against budgets, 429s, pauses and ETA, fed by events on a fake clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.config.configfile import Config, EnvironmentConfig, RunnerSettings, SystemTokenSource
from runner.events import (
    ItemBlocked,
    ItemDone,
    ItemFailed,
    ItemSkipped,
    ItemUncertain,
    JiraCall,
    JiraRateLimited,
    JiraRetry,
    MintContextRefused,
    MintOk,
    MintRateLimited,
    MintRetry,
    MintUserRefused,
    Pause,
    Resume,
    SystemTokenOk,
    SystemTokenWaiting,
)
from runner.progress import MintBudget, RunStats
from runner.progress import stats as stats_module
from tests.fakes import EPOCH, FakeClock


def make_stats(clock: FakeClock, **kwargs: object) -> RunStats:
    return RunStats(clock=clock.monotonic, wall=clock.wall, **kwargs)  # type: ignore[arg-type]


def item(stats: RunStats, state: str, site: str = "alpha", reason: str | None = None) -> None:
    cls = {"done": ItemDone, "failed": ItemFailed, "skipped": ItemSkipped,
           "blocked": ItemBlocked, "uncertain": ItemUncertain}[state]
    stats.event(cls(site=site, account="acc", row="1", action="myself", reason=reason))


def test_counts_items_by_state_and_site() -> None:
    """Each item event counts once, overall and for its site; other events don't count."""
    stats = make_stats(FakeClock(), total=10)
    for state, site in [("done", "alpha"), ("done", "beta"), ("failed", "alpha"),
                        ("skipped", "beta"), ("blocked", "alpha"), ("uncertain", "alpha")]:
        item(stats, state, site, reason=None if state == "done" else "why")
    stats.event(MintOk(environment="prod", site="alpha", account="acc"))
    assert stats.counts.as_dict() == {
        "done": 2, "failed": 1, "skipped": 1, "blocked": 1, "uncertain": 1,
    }
    assert stats.finished == 6 and stats.left == 4
    assert stats.sites["alpha"].as_dict() == {
        "done": 1, "failed": 1, "skipped": 0, "blocked": 1, "uncertain": 1,
    }
    assert stats.sites["beta"].finished == 2


def test_eta_follows_the_recent_item_rate() -> None:
    """ETA is items left over the rate of the recent window, which forgets older items."""
    clock = FakeClock()
    stats = make_stats(clock, total=100, rate_window_s=60.0)
    assert stats.eta_s() is None  # nothing finished yet: no rate
    for _ in range(10):
        clock.advance(1.0)
        item(stats, "done")
    assert stats.item_rate() == pytest.approx(1.0)
    assert stats.eta_s() == pytest.approx(90.0)
    # A long stall, then 10 items in the last 10 s: only those are in the 60 s window.
    clock.advance(80.0)
    for _ in range(10):
        clock.advance(1.0)
        item(stats, "done")
    assert stats.item_rate() == pytest.approx(10 / 60)
    assert stats.eta_s() == pytest.approx(80 / (10 / 60))


def test_eta_unknown_without_total_and_zero_when_finished() -> None:
    """Without a known total there is no ETA; once every item finished it is zero."""
    clock = FakeClock()
    stats = make_stats(clock)
    clock.advance(1.0)
    item(stats, "done")
    assert stats.eta_s() is None and stats.left is None
    stats.set_total(1)
    assert stats.eta_s() == 0.0


def test_elapsed_freezes_at_finish() -> None:
    """elapsed_s counts from construction and stops moving once finish() is called."""
    clock = FakeClock()
    stats = make_stats(clock)
    clock.advance(12.5)
    stats.finish()
    clock.advance(100.0)
    assert stats.elapsed_s() == 12.5
    assert stats.ended_at == EPOCH + 12.5


def test_mints_counted_per_bucket_against_the_budget_window() -> None:
    """Mints count under their environment's bucket; the in-window count drops old mints."""
    clock = FakeClock()
    stats = make_stats(
        clock,
        budgets={"shared": MintBudget(60, 3.0)},
        buckets={"dev": "shared", "prod": "shared"},
    )
    for env in ("dev", "prod", "prod"):
        stats.event(MintOk(environment=env, site="alpha", account="acc"))
        clock.advance(1.0)
    stats.event(MintOk(environment="other", site="alpha", account="acc"))
    assert stats.mints == {"shared": 3, "other": 1}
    assert stats.mints_in_window("shared") == 2  # the first one is 3 s old: out of the window
    clock.advance(5.0)
    assert stats.mints_in_window("shared") == 0
    assert stats.mints["shared"] == 3


def test_from_config_knows_buckets_and_budgets() -> None:
    """from_config maps each environment to its bucket and each bucket to its budget."""
    source = SystemTokenSource(env="TOKEN")
    envs = {
        "dev": EnvironmentConfig("dev", "ari:cloud:ecosystem::app/x", source, mint_bucket="one",
                                 mint_limit=100, mint_window_s=6.0),
        "prod": EnvironmentConfig("prod", "ari:cloud:ecosystem::app/x", source, mint_bucket="one",
                                  mint_limit=100, mint_window_s=6.0),
        "solo": EnvironmentConfig("solo", "ari:cloud:ecosystem::app/y", source),
    }
    config = Config(path=Path("c.toml"), runner=RunnerSettings(), environments=envs, sites={})
    stats = RunStats.from_config(config, total=5)
    stats.event(MintOk(environment="dev", site="a", account="acc"))
    stats.event(MintOk(environment="prod", site="a", account="acc"))
    assert stats.mints == {"one": 2}
    assert stats.budgets == {"one": MintBudget(100, 6.0), "solo": MintBudget(1000, 60.0)}
    assert stats.total == 5


def test_rate_limits_counted_by_scope_kind_and_reason() -> None:
    """429s are counted by (scope kind, reason): mint shapes and Jira RateLimit-Reasons."""
    stats = make_stats(FakeClock())
    stats.event(MintRateLimited(bucket="prod", until=EPOCH + 5, shape="retry_after"))
    stats.event(MintRateLimited(bucket="prod", until=EPOCH + 5, shape="graphql"))
    for _ in range(2):
        stats.event(JiraRateLimited(site="alpha", scope="burst:alpha GET /myself",
                    reason="jira-burst-based", until=EPOCH + 1))
    stats.event(JiraRateLimited(site="alpha", scope="issue:alpha/KEY-1",
                reason="jira-per-issue-on-write", until=EPOCH + 2))
    stats.event(JiraRateLimited(site="beta", scope="", reason=None, until=None))
    assert stats.rate_limits == {
        ("mint", "retry_after"): 1,
        ("mint", "graphql"): 1,
        ("burst", "jira-burst-based"): 2,
        ("issue", "jira-per-issue-on-write"): 1,
        ("site", "unknown"): 1,
    }


def test_pauses_are_active_until_their_deadline_or_resume() -> None:
    """A pause shows until its POSIX deadline passes or a resume names its scope."""
    clock = FakeClock()
    stats = make_stats(clock)
    stats.event(Pause(scope="quota:global", reason="jira-quota-global-based", until=EPOCH + 10))
    stats.event(JiraRateLimited(site="alpha", scope="burst:alpha GET /x",
                reason="jira-burst-based", until=EPOCH + 2))
    stats.event(SystemTokenWaiting(environment="prod", reason="expired"))
    assert [p.scope for p in stats.active_pauses()] == [
        "burst:alpha GET /x", "quota:global", "system_token:prod",
    ]
    clock.advance(3.0)
    assert [p.kind for p in stats.active_pauses()] == ["quota", "system_token"]
    stats.event(Resume(scope="quota:global"))
    stats.event(SystemTokenOk(environment="prod", expires_at=EPOCH + 3600))
    assert stats.active_pauses() == []
    assert stats.pause_count == {
        ("quota", "jira-quota-global-based"): 1,
        ("burst", "jira-burst-based"): 1,
        ("system_token", "expired"): 1,
    }


def test_a_pause_extended_while_active_counts_once() -> None:
    """Several 429s on a scope that is already paused extend that pause, not the count."""
    clock = FakeClock()
    stats = make_stats(clock)
    stats.event(MintRateLimited(bucket="prod", until=EPOCH + 5, shape="reset"))
    stats.event(MintRateLimited(bucket="prod", until=EPOCH + 8, shape="reset"))
    (pause,) = stats.active_pauses()
    assert pause.until == EPOCH + 8
    clock.advance(9.0)
    stats.event(MintRateLimited(bucket="prod", until=EPOCH + 20, shape="reset"))
    assert sum(stats.pause_count.values()) == 2


def test_refusals_blocked_environments_and_retries() -> None:
    """Refused users, blocked environments, retries and Jira status classes are counted."""
    stats = make_stats(FakeClock())
    for account in ("x", "y"):
        stats.event(MintUserRefused(environment="prod", site="a", account=account,
                    reason="deactivated"))
    stats.event(MintContextRefused(environment="prod", aris=("ari:cloud:jira:c:workspace/c",),
                message="Could not load permissions"))
    stats.event(MintRetry(environment="prod", reason="503", attempt=1))
    stats.event(JiraRetry(site="a", template="/x", reason="timeout", attempt=2))
    for status in (200, 201, 404):
        stats.event(JiraCall(site="a", method="GET", template="/x", status=status))
    assert stats.refused_users == {"user-deactivated": 2}
    assert stats.blocked_environments == {"prod": "Could not load permissions"}
    assert stats.retries == {("mint", "503"): 1, ("jira", "timeout"): 1}
    assert stats.jira_calls == {"2xx": 2, "4xx": 1}


def test_notable_keeps_the_last_few_interesting_events() -> None:
    """Only notable events are kept, the newest N, each with a one-line description."""
    stats = make_stats(FakeClock(), notable=3)
    item(stats, "done")
    for n in range(5):
        item(stats, "failed", reason=f"reason {n}")
    assert [note.name for note in stats.notable] == ["item.failed"] * 3
    assert [note.text.split("reason=")[1] for note in stats.notable] == [
        "reason 2", "reason 3", "reason 4",
    ]
    stats.event(MintContextRefused(environment="prod", aris=("ari:a", "ari:b"), message="m"))
    assert stats.notable[-1].text == "environment=prod aris=ari:a,ari:b"


def test_failure_reasons_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Distinct reasons beyond the cap are counted together as one 'other reasons' entry."""
    monkeypatch.setattr(stats_module, "MAX_REASONS", 3)
    stats = make_stats(FakeClock())
    for n in range(6):
        item(stats, "failed", reason=f"issue KEY-{n} not found")
    item(stats, "failed", reason="issue KEY-0 not found")
    assert len(stats.reasons) == 4
    assert stats.reasons["failed", "issue KEY-0 not found"] == 2
    assert stats.reasons["failed", stats_module.OTHER_REASON] == 3


def test_long_reasons_are_cut() -> None:
    """A reason longer than MAX_REASON_LENGTH is kept cut to that length."""
    stats = make_stats(FakeClock())
    item(stats, "skipped", reason="x" * 1000)
    ((state, reason, count),) = stats.top_reasons(10)
    assert (state, count) == ("skipped", 1)
    assert len(reason) == stats_module.MAX_REASON_LENGTH and reason.endswith("…")
