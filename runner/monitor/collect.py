"""Gauges read when Prometheus scrapes: budgets, pauses and system tokens as they are now."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from runner.monitor import budgetstate
from runner.monitor.lanes import LanesView
from runner.monitor.metrics import PREFIX

if TYPE_CHECKING:
    from runner.monitor.subscriber import Monitor


class StateCollector(Collector):
    """The monitor's budget and token state, as gauges."""

    def __init__(self, monitor: Monitor) -> None:
        self._monitor = monitor

    def describe(self) -> list[GaugeMetricFamily]:
        # Described without reading state: registering must not scrape.
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        monitor = self._monitor
        now = monitor.clock.now()

        used = _gauge("mint_bucket_used", "Mints started in the bucket's current window.",
                      "bucket")
        limit = _gauge("mint_bucket_limit", "The bucket's budget: mints per window.", "bucket")
        window = _gauge("mint_bucket_window_seconds", "The bucket's window.", "bucket")
        for use in budgetstate.mint_use(monitor.budgets):
            used.add_metric([use.bucket], use.used)
            limit.add_metric([use.bucket], use.limit)
            window.add_metric([use.bucket], use.window_s)
        yield from (used, limit, window)

        points_used = _gauge("quota_points_used", "Points spent in the quota's window.",
                             "scope", "window")
        points_left = _gauge("quota_points_left", "Points left in the quota's window.",
                             "scope", "window")
        reset = _gauge("quota_reset_timestamp_seconds", "When the quota's window ends (POSIX).",
                       "scope")
        for quota in monitor.quota():
            span = f"{quota.window_s:g}s"
            points_used.add_metric([quota.scope, span], quota.used)
            points_left.add_metric([quota.scope, span], quota.left)
            reset.add_metric([quota.scope], quota.reset_at)
        yield from (points_used, points_left, reset)

        active = _gauge("pauses_active", "Budgets holding work back, by scope kind.", "kind")
        remaining = _gauge("pause_remaining_seconds",
                           "The longest time left of the kind's pauses (open-ended: not shown).",
                           "kind", "reason")
        counts: dict[str, int] = {}
        longest: dict[tuple[str, str], float] = {}
        for pause in budgetstate.pauses(monitor.budgets, now):
            counts[pause.kind] = counts.get(pause.kind, 0) + 1
            if pause.remaining_s is not None:
                key = (pause.kind, pause.reason)
                longest[key] = max(longest.get(key, 0.0), pause.remaining_s)
        for kind, n in sorted(counts.items()):
            active.add_metric([kind], n)
        for (kind, reason), seconds in sorted(longest.items()):
            remaining.add_metric([kind, reason], seconds)
        yield from (active, remaining)

        age = _gauge("system_token_age_seconds",
                     "Since the installation's newest system token arrived.", "installation")
        expiry = _gauge("system_token_expiry_timestamp_seconds",
                        "When the installation's newest system token expires (POSIX).",
                        "installation")
        for inst in monitor.installations():
            if inst.received_at is not None:
                age.add_metric([inst.installation_id], max(0.0, now - inst.received_at))
            if inst.expires_at is not None:
                expiry.add_metric([inst.installation_id], inst.expires_at)
        yield from (age, expiry)
        if monitor.lanes is not None:
            yield from _lanes(monitor.lanes.view)


def _lanes(view: LanesView) -> Iterator[GaugeMetricFamily]:
    """The journal's workers and lanes, as the latest read found them (``runner.monitor.lanes``).
    No worker ID is a label (a restarted worker is a new one): lanes are told apart only as
    this process's or the others'."""
    alive = GaugeMetricFamily(f"{PREFIX}_workers_alive",
                              "Workers whose heartbeat is within two leases (the journal's).")
    alive.add_metric([], len(view.workers))
    runs = GaugeMetricFamily(f"{PREFIX}_runs_open",
                             "Runs on the journal that workers share and that are not over.")
    runs.add_metric([], len(view.runs))
    held = _gauge("lanes_held", "A run's lanes held by a worker, this process's or others'.",
                  "run", "holder")
    for run in view.runs:
        mine = sum(n for owner, n in run.held.items() if owner == view.me)
        held.add_metric([run.run_id, "this_process"], mine)
        held.add_metric([run.run_id, "other_processes"], sum(run.held.values()) - mine)
    yield from (alive, runs, held)


def _gauge(name: str, doc: str, *labels: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", doc, labels=list(labels))
