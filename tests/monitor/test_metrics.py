"""/metrics after real runs: it parses, names follow Prometheus's conventions, and each count
agrees with what the sandbox itself counted."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from runner.journal import SqliteJournal
from runner.sandbox.testing import ACME_DEACTIVATED, StartSandbox
from tests.e2e.harness import comments_by_item
from tests.monitor.world import FAILED_ROW, MIGRATE, NIGHTLY, served


def samples(text: str) -> dict[str, list[Sample]]:
    """Every sample of the exposition, by metric family name."""
    return {family.name: list(family.samples) for family in text_string_to_metric_families(text)}


def total(found: dict[str, list[Sample]], name: str, **labels: str) -> float:
    return sum(s.value for s in found.get(name, []) if s.name == f"{name}_total"
               and all(s.labels.get(k) == v for k, v in labels.items()))


async def test_metrics_agree_with_the_sandbox_after_a_migration_and_a_nightly_run(
        tmp_path: Path, start_sandbox: StartSandbox) -> None:
    """After a migration (mint and per-issue 429s, a 404, a deactivated user) and a nightly
    sync run by serve, /metrics parses with prometheus_client's parser and its mints by outcome,
    429s by reason and items by state are the sandbox's and the journal's own counts."""
    async with served(tmp_path, start_sandbox, latency_ms=0.0) as world:
        await world.forge.trigger(MIGRATE.key, "acme")
        await world.forge.trigger(NIGHTLY.key, "acme")
        outcomes = await world.remote.desk.wait_for_outcomes(2)
        text = await world.get("/metrics")
        status = await world.status()
        report = world.sandbox.world
    assert sorted(o.state for o in outcomes) == ["finished", "finished"], outcomes
    # The page has both runs, finished, each with its plan's shortest duration.
    runs = status["runs"]
    assert isinstance(runs, list)
    assert sorted((r["state"], r["bound_s"] > 0) for r in runs) == [("finished", True)] * 2
    found = samples(text)

    # Mints by outcome are the gateway's own counts, and it did limit some.
    assert total(found, "forge_runner_mints", outcome="ok") == report.mints_accepted["dev"]
    assert report.mints_rejected["dev"] > 0
    assert total(found, "forge_runner_mints", outcome="rate_limited") == \
        report.mints_rejected["dev"]
    assert total(found, "forge_runner_rate_limited", api="gateway") == \
        report.mints_rejected["dev"]
    assert total(found, "forge_runner_mints", outcome="user_refused") == \
        sum(report.mints_refused.values()) == 1

    # Jira's 429s by reason are the ones the sandbox sent.
    sent = Counter(e.reason for e in report.rate_limits if e.api == "jira")
    assert sent["jira-per-issue-on-write"] > 0
    seen: Counter[str] = Counter()
    for s in found["forge_runner_rate_limited"]:
        if s.name.endswith("_total") and s.labels["api"] == "jira":
            seen[s.labels["reason"]] += int(s.value)
    assert seen == sent
    # Every Jira answer is counted once, by the template the sandbox saw.
    answered: Counter[str] = Counter()
    for s in found["forge_runner_jira_requests"]:
        if s.name.endswith("_total"):
            answered[s.labels["method"] + " " + s.labels["template"]] += int(s.value)
    assert answered == report.jira_calls

    # Items by run and state are the journal's.
    async with SqliteJournal(tmp_path / "journal.db", create=False) as journal:
        for outcome in outcomes:
            assert outcome.run_id is not None
            counts = (await journal.counts(outcome.run_id)).by_state
            for state, n in counts.items():
                if state in ("done", "failed", "skipped", "blocked", "uncertain"):
                    assert total(found, "forge_runner_items", run=outcome.run_id,
                                 state=str(state)) == n, (outcome.run_id, state)
    cloud = report.config.sites["acme"].cloud_id
    job = f"migration@{cloud}"  # serve's name for a template's run on a site
    assert total(found, "forge_runner_items", job=job, state="failed") == 1
    assert total(found, "forge_runner_items", job=job, state="skipped") == 1
    comments = sum(comments_by_item(report.parts["jira"], cloud).values())
    assert total(found, "forge_runner_items", job=job, state="done") == comments > 0

    # Latency histograms saw every answer; the budgets are gauges read at the scrape.
    jira_count = sum(s.value for s in found["forge_runner_jira_request_duration_seconds"]
                     if s.name.endswith("_count"))
    assert jira_count == sum(answered.values())
    gateway_count = sum(s.value for s in found["forge_runner_gateway_request_duration_seconds"]
                        if s.name.endswith("_count"))
    assert gateway_count == total(found, "forge_runner_mints")
    assert any(s.value > 0 for s in found["forge_runner_journal_write_duration_seconds"]
               if s.name.endswith("_count"))
    (limit,) = found["forge_runner_mint_bucket_limit"]
    assert limit.labels == {"bucket": "dev"} and limit.value == 1000
    (age,) = found["forge_runner_system_token_age_seconds"]
    assert age.labels["installation"] == world.forge.installation_id("acme")
    assert age.value >= 0


async def test_metric_names_and_labels_follow_the_conventions(
        tmp_path: Path, start_sandbox: StartSandbox) -> None:
    """Counters end in _total, durations are in seconds, and no label value is an account ID
    or a row key (labels stay bounded however many users a job has)."""
    async with served(tmp_path, start_sandbox, latency_ms=0.0) as world:
        await world.forge.trigger(MIGRATE.key, "acme")
        await world.remote.desk.wait_for_outcomes(1)
        text = await world.get("/metrics")
    families = list(text_string_to_metric_families(text))
    assert families
    accounts = {"5ca1ab1e", ACME_DEACTIVATED}
    for family in families:
        assert family.name.startswith("forge_runner_"), family.name
        if family.type == "counter":
            assert all(s.name in (f"{family.name}_total", f"{family.name}_created")
                       for s in family.samples)
        if family.type == "histogram":
            assert family.name.endswith("_seconds"), family.name
        for sample in family.samples:
            for value in sample.labels.values():
                assert not any(a in value for a in accounts), (family.name, sample.labels)
                assert FAILED_ROW not in value and "MIG-" not in value, sample.labels
