"""The Prometheus metrics of one process: a registry of its own, and the events that move them.

Counters and histograms move when an event says so (``Metrics.event``); gauges that describe a
state (a bucket's use, a quota's points, pauses, system tokens) are read when Prometheus
scrapes, by ``runner.monitor.collect``. Names follow Prometheus's conventions: ``_total`` for
counters, base units (seconds), and labels whose values are bounded: a site, an endpoint
template, an environment, a reason; never an account ID, a row or an issue key (a pause's scope
names the issue for per-issue writes, so only its kind is a label).

Items are counted by run too (``run``, ``job``): a serve process that lives for months starts a
run a night per site, so only the latest ``KEEP_RUNS`` runs keep their series.
"""

from __future__ import annotations

import contextlib
from collections import deque

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from runner.events import (
    Event,
    GatewayCall,
    ItemEvent,
    JiraCall,
    JiraRateLimited,
    LaneLeaseLost,
    LaneTakenOver,
    MintRateLimited,
)
from runner.progress.stats import scope_kind

PREFIX = "forge_runner"
KEEP_RUNS = 20
# Jira answers from a few ms (sandbox) to tens of seconds (a slow search).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# A journal write is a commit on a local disk: sub-millisecond to a slow fsync.
JOURNAL_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class Metrics:
    """The event-driven metrics, in ``registry`` (not the global one: each process, server or
    test has its own)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.items = Counter(f"{PREFIX}_items_total", "Items that reached a final state.",
                             ("run", "job", "site", "state"), registry=r)
        self.jira_requests = Counter(
            f"{PREFIX}_jira_requests_total", "Jira REST answers, by endpoint template.",
            ("site", "template", "method", "status"), registry=r)
        self.rate_limited = Counter(
            f"{PREFIX}_rate_limited_total", "429s (and rate-limited mints), by the budget hit.",
            ("api", "site", "scope", "reason"), registry=r)
        self.mints = Counter(f"{PREFIX}_mints_total", "Mint requests sent, by their outcome.",
                             ("environment", "outcome"), registry=r)
        self.jira_latency = Histogram(
            f"{PREFIX}_jira_request_duration_seconds", "Jira REST latency, send to answer.",
            ("site",), buckets=LATENCY_BUCKETS, registry=r)
        self.gateway_latency = Histogram(
            f"{PREFIX}_gateway_request_duration_seconds", "Mint (GraphQL gateway) latency.",
            ("environment",), buckets=LATENCY_BUCKETS, registry=r)
        self.journal_latency = Histogram(
            f"{PREFIX}_journal_write_duration_seconds", "Journal writes, until durable.",
            ("operation",), buckets=JOURNAL_BUCKETS, registry=r)
        self.run_items = Gauge(f"{PREFIX}_run_items", "A run's items in the plan.",
                               ("run", "job"), registry=r)
        self.run_running = Gauge(f"{PREFIX}_run_running", "1 while the run goes on, else 0.",
                                 ("run", "job"), registry=r)
        self.run_last_item = Gauge(
            f"{PREFIX}_run_last_item_timestamp_seconds",
            "When the run's latest item reached a final state (POSIX), or its start.",
            ("run", "job"), registry=r)
        self.lane_takeovers = Counter(
            f"{PREFIX}_lane_takeovers_total",
            "Lanes this process claimed that another worker held before (fence above 1).",
            registry=r)
        self.lanes_lost = Counter(
            f"{PREFIX}_lanes_lost_total",
            "Lanes this process lost: their lease ended, or another worker took them over.",
            registry=r)
        self._runs: deque[tuple[str, str]] = deque()
        self._jobs: dict[str, str] = {}

    # -- runs ---------------------------------------------------------------------------------
    def run_started(self, run: str, job: str, total: int | None, now: float) -> None:
        if run not in self._jobs:
            self._runs.append((run, job))
            self._jobs[run] = job
            while len(self._runs) > KEEP_RUNS:
                self._forget(*self._runs.popleft())
        self.run_items.labels(run, job).set(total or 0)
        self.run_running.labels(run, job).set(1)
        self.run_last_item.labels(run, job).set(now)

    def run_ended(self, run: str) -> None:
        job = self._jobs.get(run)
        if job is not None:
            self.run_running.labels(run, job).set(0)

    def _forget(self, run: str, job: str) -> None:
        self._jobs.pop(run, None)
        for gauge in (self.run_items, self.run_running, self.run_last_item):
            _remove(gauge, run, job)
        for labels in list(_label_sets(self.items)):
            if labels[0] == run:
                _remove(self.items, *labels)

    # -- events -------------------------------------------------------------------------------
    def event(self, ev: Event, run: str | None, now: float) -> None:
        """Count ``ev``; ``run`` is the run it belongs to, when known."""
        match ev:
            case ItemEvent():
                job = self._jobs.get(run or "", "")
                self.items.labels(run or "", job, ev.site, ev.state).inc()
                if run is not None and run in self._jobs:
                    self.run_last_item.labels(run, job).set(now)
            case JiraCall():
                self.jira_requests.labels(ev.site, ev.template, ev.method, str(ev.status)).inc()
                if ev.duration_s is not None:
                    self.jira_latency.labels(ev.site).observe(ev.duration_s)
            case JiraRateLimited():
                scope = scope_kind(ev.scope) if ev.scope else "site"
                self.rate_limited.labels("jira", ev.site, scope, ev.reason or "unknown").inc()
            case MintRateLimited():
                self.rate_limited.labels("gateway", "", "mint", ev.shape).inc()
            case GatewayCall():
                self.mints.labels(ev.environment, ev.outcome).inc()
                self.gateway_latency.labels(ev.environment).observe(ev.duration_s)
            case LaneTakenOver():
                self.lane_takeovers.inc()
            case LaneLeaseLost():
                self.lanes_lost.inc()
            case _:
                pass


def _label_sets(metric: Counter) -> list[tuple[str, ...]]:
    # prometheus_client keeps a child per label set; the public API has no listing.
    return [tuple(labels) for labels in metric._metrics]


def _remove(metric: Counter | Gauge, *labels: str) -> None:
    with contextlib.suppress(KeyError):
        metric.remove(*labels)
