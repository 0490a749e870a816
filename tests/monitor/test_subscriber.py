"""The monitor's own bookkeeping, fed events as the runs' parts emit them: bounded series, the
chart's steps, and which run an event belongs to."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from runner.budgets import ManualClock
from runner.config.configfile import load_config
from runner.events import ItemDone, ItemFailed, MintOk, Pause, RemoteRunStarted, Resume, RunFinished
from runner.monitor import Monitor
from runner.monitor.metrics import KEEP_RUNS
from runner.monitor.page import chart_svg
from runner.monitor.snapshot import snapshot
from runner.monitor.subscriber import CHART_STEP_S, ROWS_PER_REASON

CONFIG = Path(__file__).resolve().parents[2] / "config.example.toml"


def _monitor(clock: ManualClock) -> Monitor:
    return Monitor(load_config(CONFIG), clock=clock, process="serve")


def _runs_in_metrics(monitor: Monitor) -> set[str]:
    text = generate_latest(monitor.metrics.registry).decode()
    return {s.labels["run"] for f in text_string_to_metric_families(text)
            for s in f.samples if "run" in s.labels}


def test_only_the_latest_runs_keep_their_series() -> None:
    """A serve process that has run more runs than KEEP_RUNS exposes series (and page entries)
    for the latest KEEP_RUNS only: labels stay bounded however long it lives."""
    clock = ManualClock()
    monitor = _monitor(clock)
    for n in range(KEEP_RUNS + 5):
        run = f"r-20261203-{n:06x}"
        site = f"site-{n % 3}"
        monitor.event(RemoteRunStarted(run=run, job="nightly", items=1, site=site))
        monitor.event(ItemDone(site=site, account="5ca1ab1e0000000000000001", row="line-1",
                               action="user.property.set"))
        monitor.event(RunFinished(run=run, state="finished"))
    kept = {f"r-20261203-{n:06x}" for n in range(5, KEEP_RUNS + 5)}
    assert _runs_in_metrics(monitor) == kept
    assert set(monitor.runs) == kept


def test_events_count_for_their_sites_run() -> None:
    """Two runs on two sites at once: each item counts for its site's run, failure reasons
    keep at most ROWS_PER_REASON rows, and the plan's bound comes along."""
    clock = ManualClock()
    monitor = _monitor(clock)
    monitor.event(RemoteRunStarted(run="r-a", job="sync@a", items=10, site="a", bound_s=4.0))
    monitor.event(RemoteRunStarted(run="r-b", job="sync@b", items=10, site="b"))
    for n in range(ROWS_PER_REASON + 2):
        monitor.event(ItemFailed(site="b", account="x", row=f"line-{n}", action="act",
                                 reason="http 404"))
    monitor.event(ItemDone(site="a", account="x", row="line-1", action="act"))
    runs = {r["run_id"]: r for r in snapshot(monitor)["runs"]}
    assert runs["r-a"]["counts"]["done"] == 1 and runs["r-a"]["counts"]["failed"] == 0
    assert runs["r-a"]["bound_s"] == 4.0
    (failure,) = runs["r-b"]["failures"]
    assert failure["count"] == ROWS_PER_REASON + 2
    assert failure["rows"] == [f"line-{n}" for n in range(ROWS_PER_REASON)]


def test_the_chart_counts_items_and_mints_per_step_and_pauses_end() -> None:
    """Items and mints land in the step of their time, as rates per second; a pause shows its
    time left by the monitor's clock and is gone once resumed."""
    clock = ManualClock(start=1_800_000_000.0)
    monitor = _monitor(clock)
    monitor.event(RemoteRunStarted(run="r-a", job="sync@a", items=10, site="a"))
    for _ in range(5):
        monitor.event(ItemDone(site="a", account="x", row="r", action="act"))
    monitor.event(MintOk(environment="dev", site="a", account="x"))
    clock.advance(CHART_STEP_S)
    monitor.event(Pause(scope="mint:dev", reason="rate limited", until=clock.now() + 30))
    series = monitor.chart.series(clock.now())
    assert series[-2][1:] == (5 / CHART_STEP_S, 1 / CHART_STEP_S)
    assert series[-1][1:] == (0.0, 0.0)
    (pause,) = snapshot(monitor)["budgets"]["pauses"]
    assert pause["scope"] == "mint:dev" and pause["remaining_s"] == 30
    svg = chart_svg(monitor.chart, clock.now())
    assert svg.startswith("<svg") and svg.count("<polyline") == 2
    monitor.event(Resume(scope="mint:dev"))
    assert snapshot(monitor)["budgets"]["pauses"] == []
