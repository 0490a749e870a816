"""What a job will do and how fast it can possibly go, before anything is sent.

``make_plan`` streams the rows once (through ``check_rows``, so a plan is also a full check):
rows, distinct users, items, mints needed (one per distinct site and user), points, calls per
(site, endpoint, method) and writes per issue. Each budget then gives a lower bound on the
run's duration:

- mint bucket, per bucket: mints / (mint_limit / mint_window_s); the runner paces mints evenly
  from the first second, so their steady rate is what counts;
- points quota (one per app): (points - burst) / ((1 - margin) * quota_points / quota_window_s);
  the quota is shared by every tenant and run of the app, so the runner paces it over its window
  rather than assume a whole hour's quota is there to spend at once, letting only a small burst
  (5% of the quota, ``runner.budgets.quota.DEFAULT_BURST``) go at once and never spending the
  last 2% of a window (``DEFAULT_MARGIN``, kept for estimate errors and the app's other traffic),
  nor, unless the run is serve's, the share ``[jira_budgets] serve_reserve`` keeps for serve;
- burst, per (site, endpoint, method): a token bucket holding one second's calls, so
  (calls - rate) / rate;
- per-issue writes, per issue: sliding windows (20 per 2 s, 100 per 30 s), so the n-th write can
  go at floor((n - 1) / limit) * window at the earliest, under each window.

The largest bound is the shortest possible duration, and its budget is the one that binds.
Calls made inside Python actions can't be known in advance and are not counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from runner.budgets.quota import DEFAULT_BURST, DEFAULT_MARGIN
from runner.config.configfile import Config
from runner.jira.client import JiraRequest
from runner.job.jobfile import Job, Row, check_rows
from runner.job.tally import HashTally, key_hash

POINTS_SCOPE = "app"
# Candidates kept for naming the busiest issue (its count is exact either way): any issue with
# more than 1/64 of all writes is among them, which covers every issue whose budget can bind
# under Jira's defaults (a per-issue bound beats the points quota only past ~1/5 of the writes).
_ISSUE_CANDIDATES = 64


@dataclass(frozen=True)
class CallCount:
    site: str
    method: str
    template: str
    calls: int
    points: int


@dataclass(frozen=True)
class Bound:
    """The shortest time one budget allows: ``amount`` units at ``rate`` per second."""

    budget: str  # "mint bucket" | "points quota" | "burst" | "per-issue writes"
    scope: str  # bucket name, "app", "site METHOD template", "site issue"
    amount: int
    unit: str  # "mints" | "points" | "calls" | "writes"
    rate: float  # steady rate, per second
    seconds: float
    limit: str = ""  # the budget as configured, for people: "1000/60s", "20/2s, 100/30s"


@dataclass(frozen=True)
class Plan:
    job: str
    path: str
    rows: int
    users: int
    items: int
    mints: int
    points: int
    python_items: int  # items of Python actions: their calls are not counted
    site_rows: Mapping[str, int]
    mints_by_bucket: Mapping[str, int]
    calls: tuple[CallCount, ...]
    issues_written: int
    busiest_issue: str | None  # "site KEY"; None when no issue is written or it can't be named
    busiest_issue_writes: int
    bounds: tuple[Bound, ...]  # the tightest scope of each budget
    binding: Bound | None
    shortest_s: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _seconds(amount: int, rate: float) -> float:
    return amount / rate if rate > 0 else float("inf")


def _window_seconds(amount: int, limit: int, window_s: float) -> float:
    """When the last of ``amount`` events can happen at the earliest, at most ``limit`` in any
    ``window_s``."""
    return ((amount - 1) // limit) * window_s if amount > 0 else 0.0


class _Counts:
    """What the plan accumulates per row: small maps, plus compact tallies for issues."""

    def __init__(self, job: Job):
        self.job = job
        self.points = 0
        self.python_items = 0
        self.calls: Counter[tuple[str, str, str]] = Counter()
        self.call_points: Counter[tuple[str, str, str]] = Counter()
        self.issues = HashTally()
        self.candidates: dict[str, int] = {}

    def visit(self, row: Row, requests: Sequence[JiraRequest | None]) -> None:
        for request in requests:
            if request is None:
                self.python_items += 1
                continue
            if request.resolve is not None:
                self._call(row.site, request.resolve.request)
            self._call(row.site, request)
            if request.issue is not None:
                self._issue(f"{row.site} {request.issue}")

    def _call(self, site: str, request: JiraRequest) -> None:
        key = (site, request.method, request.template)
        self.calls[key] += 1
        self.call_points[key] += request.cost
        self.points += request.cost

    def _issue(self, name: str) -> None:
        self.issues.add(name)
        # Misra-Gries: keeps every issue with more than 1/k of the writes, in k counters.
        c = self.candidates
        if name in c:
            c[name] += 1
        elif len(c) < _ISSUE_CANDIDATES:
            c[name] = 1
        else:
            for other in list(c):
                c[other] -= 1
                if not c[other]:
                    del c[other]

    def busiest(self) -> tuple[str | None, int]:
        """The most-written issue's exact count, and its name when a candidate has that count
        (among ties, any one of them)."""
        named = {key_hash(n): n for n in self.candidates}
        most = 0
        best_named: tuple[int, str] | None = None
        for h, count in self.issues.items():
            most = max(most, count)
            if h in named and (best_named is None or count > best_named[0]):
                best_named = (count, named[h])
        if best_named is not None and best_named[0] == most:
            return best_named[1], most
        return None, most


def make_plan(
    job: Job, config: Config, *, checkpoint: Callable[[], None] | None = None,
    serve_run: bool = False,
) -> Plan:
    """Check every row and count what the job will do; JobError on the first bad row.
    ``serve_run``: the run is serve's, which may spend the share of the quota the others keep
    for serve's runs (``[jira_budgets] serve_reserve``); other runs' bounds leave it out.

    ``checkpoint`` is called every few hundred rows; it may raise to stop a long check (the run
    command stops on a signal that way, from the thread the check runs in).
    """
    counts = _Counts(job)
    visit = counts.visit
    if checkpoint is not None:
        seen = 0

        def visit(row: Row, requests: Sequence[JiraRequest | None]) -> None:
            nonlocal seen
            seen += 1
            if seen % 256 == 0:
                checkpoint()
            counts.visit(row, requests)

    checked = check_rows(job, config, visit)
    budgets = config.jira_budgets

    mints_by_bucket: Counter[str] = Counter()
    bucket_rate: dict[str, tuple[float, str]] = {}
    for site, users in checked.site_users.items():
        env = config.environments[config.sites[site].environment]
        mints_by_bucket[env.bucket] += users
        pace = (env.mint_limit / env.mint_window_s, f"{env.mint_limit}/{env.mint_window_s:g}s")
        bucket_rate[env.bucket] = min(pace, bucket_rate.get(env.bucket, pace))
    bounds: list[Bound] = []
    mint_bounds = [
        Bound("mint bucket", bucket, n, "mints", bucket_rate[bucket][0],
              _seconds(n, bucket_rate[bucket][0]), bucket_rate[bucket][1])
        for bucket, n in sorted(mints_by_bucket.items())
    ]
    if mint_bounds:
        bounds.append(max(mint_bounds, key=lambda b: b.seconds))
    # The pacer's steady rate: it spends (1 - margin) of each window, never the margin, and
    # a run that is not serve's never the share kept for serve's runs either.
    reserve = 0.0 if serve_run else budgets.serve_reserve
    quota_rate = (1 - DEFAULT_MARGIN - reserve) * budgets.quota_points / budgets.quota_window_s
    paced_points = max(0, counts.points - int(budgets.quota_points * DEFAULT_BURST))
    quota_limit = f"{budgets.quota_points}/{budgets.quota_window_s:g}s"
    if reserve:
        quota_limit += f", {reserve:.0%} kept for serve's runs"
    bounds.append(Bound("points quota", POINTS_SCOPE, counts.points, "points", quota_rate,
                        _seconds(paced_points, quota_rate), quota_limit))
    burst_bounds = []
    for (site, method, template), n in sorted(counts.calls.items()):
        rate = float(budgets.burst_get_post if method in ("GET", "POST")
                     else budgets.burst_put_delete)
        burst_bounds.append(Bound("burst", f"{site} {method} {template}", n, "calls", rate,
                                  max(0.0, _seconds(n, rate) - 1.0), f"{rate:g}/s"))
    if burst_bounds:
        bounds.append(max(burst_bounds, key=lambda b: b.seconds))
    busiest, writes = counts.busiest()
    if writes:
        rate = min(budgets.per_issue_2s / 2.0, budgets.per_issue_30s / 30.0)
        seconds = max(_window_seconds(writes, budgets.per_issue_2s, 2.0),
                      _window_seconds(writes, budgets.per_issue_30s, 30.0))
        scope = busiest or "(the busiest issue)"
        limit = f"{budgets.per_issue_2s}/2s, {budgets.per_issue_30s}/30s"
        bounds.append(Bound("per-issue writes", scope, writes, "writes", rate, seconds, limit))
    binding = max(bounds, key=lambda b: b.seconds) if bounds else None
    if binding is not None and binding.seconds == 0:
        binding = None
    calls = tuple(
        CallCount(site, method, template, n, counts.call_points[(site, method, template)])
        for (site, method, template), n in sorted(counts.calls.items())
    )
    return Plan(
        job=job.name,
        path=str(job.path),
        rows=checked.rows,
        users=checked.users,
        items=checked.items,
        mints=sum(mints_by_bucket.values()),
        points=counts.points,
        python_items=counts.python_items,
        site_rows=dict(checked.site_rows),
        mints_by_bucket=dict(mints_by_bucket),
        calls=calls,
        issues_written=counts.issues.distinct(),
        busiest_issue=busiest,
        busiest_issue_writes=writes,
        bounds=tuple(bounds),
        binding=binding,
        shortest_s=binding.seconds if binding else 0.0,
    )
