"""A Jepsen-style checker for runs on several workers: what the sandbox saw, against the job.

Input: the sandbox's arrival logs (``runner.sandbox.arrivals``: every Jira request and mint,
with its sender, its token's account, a create's item marker and whether it took effect), the
job's items in order (``Expected``), and what the journal holds (``tests.cluster.history``).
Output: one ``Verdict`` whose ``counts()`` a test asserts are all zero:

- ``lost``: items with no effect in Jira though the job expects one, or the journal says done;
- ``duplicated``: an item's effect made more than once (extra effects, per item);
- ``inversions``: per user, an effect arriving after one of a later item of the job (the job's
  row order, then action order), counted once per item that came late;
- ``wrong_account``: an effect made with another user's token than the item's;
- ``stale_writes``: journal writes accepted under a fence older than one already claimed;
- ``over_budget``: budgets whose peak, over every window, passed the limit given.

An *effect* is an arrival the sandbox applied (its endpoint ran and succeeded, answered or
not) that ``identify`` maps to an item: by default a create's ``forge-runner.item`` marker.
Idempotent writes carry no marker; a test that counts them passes an ``identify`` of its own
(from the arrival's path, say). ``requests_after`` finds what a sender (a worker, by its
User-Agent) sent after a moment, such as its lease's end.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from runner.sandbox.arrivals import JiraArrival, MintArrival

Identify = Callable[[JiraArrival], str | None]
CREATES = frozenset({"comment.add", "issue.create", "worklog.add"})
WORKER = re.compile(r"\(worker ([^)\s]+)\)")


def by_marker(arrival: JiraArrival) -> str | None:
    return arrival.marker


def worker_of(sender: str | None) -> str | None:
    """The worker ID in ``forge-runner/<version> (worker <id>)``; None for another sender."""
    found = WORKER.search(sender or "")
    return found.group(1) if found else None


@dataclass(frozen=True)
class Expected:
    """One item the job asks for; a list of them is in the job's order (rows, then actions)."""

    item: str  # "row_key#action_index"
    account: str


@dataclass(frozen=True)
class JournalItem:
    """One row of the journal's ``items`` (``fence`` None where the journal has none)."""

    run_id: str
    row_key: str
    action_index: int
    action: str
    state: str
    account_id: str
    updated_at: float
    fence: int | None = None

    @property
    def item(self) -> str:
        return f"{self.row_key}#{self.action_index}"


@dataclass(frozen=True)
class Claim:
    """A lane claimed under ``fence`` at ``at`` (POSIX time), as the test saw it happen."""

    run_id: str
    account_id: str
    fence: int
    at: float


@dataclass(frozen=True)
class Limit:
    """A budget: at most ``limit`` (requests, or points) in every window of ``window_s``.

    ``aligned``: windows start at multiples of ``window_s`` since the epoch (Jira's quota, a
    fixed mint window); otherwise every window ``(t - window_s, t]`` counts (a sliding log).
    """

    limit: float
    window_s: float
    aligned: bool = False


@dataclass(frozen=True)
class Limits:
    """What each budget allows; a budget left None is not checked."""

    mints: Limit | None = None  # per OAuth client: every mint sent (a refused one too)
    quota: Limit | None = None  # points charged, every site together
    burst: Limit | None = None  # requests per (site, route)
    per_issue: tuple[Limit, ...] = ()  # writes per issue (Jira: 2 s and 30 s windows)


@dataclass(frozen=True)
class Peak:
    """A budget's highest use in any one window, for one key."""

    budget: str  # "mints", "quota", "burst", "per_issue"
    key: str  # client ID, "all", "cloud_id route", issue
    window_s: float
    peak: float
    limit: float

    @property
    def over(self) -> bool:
        return self.peak > self.limit


@dataclass
class Verdict:
    lost: list[str] = field(default_factory=list)
    duplicated: dict[str, int] = field(default_factory=dict)  # item -> extra effects
    inversions: dict[str, int] = field(default_factory=dict)  # account -> late items
    wrong_account: list[str] = field(default_factory=list)
    stale_writes: list[str] = field(default_factory=list)
    peaks: list[Peak] = field(default_factory=list)

    @property
    def over_budget(self) -> list[Peak]:
        return [p for p in self.peaks if p.over]

    def counts(self) -> dict[str, int]:
        """Every anomaly's count: a correct run has all of them 0."""
        return {
            "lost": len(self.lost),
            "duplicated": sum(self.duplicated.values()),
            "inversions": sum(self.inversions.values()),
            "wrong_account": len(self.wrong_account),
            "stale_writes": len(self.stale_writes),
            "over_budget": len(self.over_budget),
        }

    def peak(self, budget: str) -> float:
        """The highest peak of one budget over all its keys (0 when nothing used it)."""
        return max((p.peak for p in self.peaks if p.budget == budget), default=0.0)


def effects(jira: Iterable[JiraArrival], identify: Identify = by_marker
            ) -> dict[str, list[JiraArrival]]:
    """Each item's applied arrivals, in the order they arrived."""
    found: dict[str, list[JiraArrival]] = defaultdict(list)
    for arrival in jira:
        item = identify(arrival) if arrival.applied else None
        if item is not None:
            found[item].append(arrival)
    return dict(found)


def lost(expected: Iterable[str], made: Mapping[str, Sequence[JiraArrival]]) -> list[str]:
    return sorted({item for item in expected if not made.get(item)})


def duplicated(made: Mapping[str, Sequence[JiraArrival]]) -> dict[str, int]:
    return {item: len(arr) - 1 for item, arr in sorted(made.items()) if len(arr) > 1}


def inversions(expected: Sequence[Expected], jira: Iterable[JiraArrival],
               identify: Identify = by_marker) -> dict[str, int]:
    """Per account, how many items' first effect arrived after a later item's effect."""
    position = {e.item: n for n, e in enumerate(expected)}
    account = {e.item: e.account for e in expected}
    seen: set[str] = set()
    highest: dict[str, int] = {}
    late: Counter[str] = Counter()
    for arrival in jira:
        item = identify(arrival) if arrival.applied else None
        if item is None or item in seen or item not in position:
            continue  # a duplicate is counted as one, not as an inversion too
        seen.add(item)
        user = account[item]
        if position[item] < highest.get(user, -1):
            late[user] += 1
        highest[user] = max(highest.get(user, -1), position[item])
    return dict(late)


def wrong_account(expected: Iterable[Expected], made: Mapping[str, Sequence[JiraArrival]]
                  ) -> list[str]:
    account = {e.item: e.account for e in expected}
    return sorted(item for item, arr in made.items()
                  if item in account and any(a.account != account[item] for a in arr))


def stale_writes(items: Iterable[JournalItem], claims: Iterable[Claim]) -> list[str]:
    """Items whose last write was accepted under a fence after a newer fence of their lane had
    been claimed (``updated_at`` later than that claim): a deposed owner's write got in."""
    newer: dict[tuple[str, str], list[Claim]] = defaultdict(list)
    for claim in claims:
        newer[(claim.run_id, claim.account_id)].append(claim)
    stale = []
    for it in items:
        if it.fence is None:
            continue
        for claim in newer.get((it.run_id, it.account_id), ()):
            if claim.fence > it.fence and claim.at < it.updated_at:
                stale.append(f"{it.run_id} {it.item}")
                break
    return sorted(stale)


def most_in_window(events: Iterable[tuple[float, float]], limit: Limit) -> float:
    """The most weight in one window: aligned windows, or every ``(t - window_s, t]``."""
    ordered = sorted(events)
    if limit.aligned:
        per: Counter[int] = Counter()
        for at, weight in ordered:
            per[math.floor(at / limit.window_s)] += weight  # type: ignore[assignment]
        return float(max(per.values(), default=0))
    best = total = 0.0
    start = 0
    for at, weight in ordered:
        total += weight
        while ordered[start][0] <= at - limit.window_s:
            total -= ordered[start][1]
            start += 1
        best = max(best, total)
    return best


def budget_peaks(jira: Sequence[JiraArrival], mints: Sequence[MintArrival], limits: Limits
                 ) -> list[Peak]:
    """Each budget's peak per key over every window. Jira's budgets count what was sent (a
    request refused with a 429 was sent too), the quota the points the sandbox charged."""
    peaks: list[Peak] = []

    def add(budget: str, limit: Limit | None, groups: Mapping[str, list[tuple[float, float]]]
            ) -> None:
        if limit is None:
            return
        for key, events in sorted(groups.items()):
            peaks.append(Peak(budget, key, limit.window_s, most_in_window(events, limit),
                              limit.limit))

    by_client: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for m in mints:
        by_client[m.client_id].append((m.at, 1.0))
    add("mints", limits.mints, by_client)
    add("quota", limits.quota, {"all": [(a.at, float(a.points)) for a in jira if a.points]})
    by_route: dict[str, list[tuple[float, float]]] = defaultdict(list)
    by_issue: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for a in jira:
        by_route[f"{a.cloud_id} {a.route}"].append((a.at, 1.0))
        if a.issue is not None and not a.route.startswith("GET "):
            by_issue[f"{a.cloud_id} {a.issue.upper()}"].append((a.at, 1.0))
    add("burst", limits.burst, by_route)
    for limit in limits.per_issue:
        add("per_issue", limit, by_issue)
    return peaks


def requests_after(jira: Iterable[JiraArrival], mints: Iterable[MintArrival], worker: str,
                   after: float, *, accounts: Collection[str] | None = None
                   ) -> list[JiraArrival | MintArrival]:
    """Every request ``worker`` (its ID in the User-Agent) sent after ``after``; only those
    for ``accounts`` (its token's user, or the user a mint was for) when given: a worker that
    lost some lanes may go on working on others."""
    sent: list[JiraArrival | MintArrival] = [*jira, *mints]
    return sorted((a for a in sent if a.at > after and worker_of(a.sender) == worker
                   and (accounts is None or a.account in accounts)), key=lambda a: a.at)


def late_writes(items: Iterable[JournalItem], lost: Iterable[tuple[str, str, int]],
                after: float) -> list[str]:
    """Journal writes accepted after ``after`` under a fence a worker had lost: ``lost`` holds
    (run, account, fence) of each lane it held, ``after`` is when its lease ended."""
    fences = {(run, acc): fence for run, acc, fence in lost}
    return sorted(f"{it.run_id} {it.item}" for it in items
                  if it.fence is not None and it.updated_at > after
                  and (fence := fences.get((it.run_id, it.account_id))) is not None
                  and it.fence <= fence)


def check(
    jira: Sequence[JiraArrival],
    mints: Sequence[MintArrival],
    expected: Sequence[Expected],
    *,
    journal: Sequence[JournalItem] = (),
    claims: Sequence[Claim] = (),
    limits: Limits = Limits(),
    identify: Identify = by_marker,
    effectful: Callable[[JournalItem], bool] = lambda it: it.action in CREATES,
) -> Verdict:
    """Every count at once. ``expected`` items must all have an effect; so must every journal
    item that is ``done`` and ``effectful`` (by default: a create)."""
    made = effects(jira, identify)
    must = [e.item for e in expected]
    must += [it.item for it in journal if it.state == "done" and effectful(it)]
    return Verdict(
        lost=lost(must, made),
        duplicated=duplicated(made),
        inversions=inversions(expected, jira, identify),
        wrong_account=wrong_account(expected, made),
        stale_writes=stale_writes(journal, claims),
        peaks=budget_peaks(jira, mints, limits),
    )
