"""Run statistics: an ``Observer`` that counts what the run's parts report.

The live view, the plain progress lines, the summary and the JSON report all read one
``RunStats``. It holds counts, not items: memory stays flat however long the job is (the report
streams failed items from the journal instead). Events are the classes of ``runner.events``.

Scopes in ``Pause``/``Resume``/``JiraRateLimited`` are strings; their kind is the text before
the first ``:`` (``burst:alpha GET /rest/api/3/issue`` -> ``burst``). Minting pauses use the
scope ``mint:<bucket>`` and a missing system token ``system_token:<environment>``.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runner.events import (
    Event,
    ItemBlocked,
    ItemDone,
    ItemEvent,
    ItemFailed,
    ItemRecovered,
    ItemUncertain,
    JiraCall,
    JiraRateLimited,
    JiraRetry,
    MintContextRefused,
    MintFailed,
    MintOk,
    MintRateLimited,
    MintRetry,
    MintUserRefused,
    Resume,
    SystemTokenOk,
    SystemTokenWaiting,
)
from runner.events import Pause as PauseEvent
from runner.journal.reasons import short, user_refused

if TYPE_CHECKING:
    from runner.config.configfile import Config

Clock = Callable[[], float]

ITEM_STATES = ("done", "failed", "skipped", "blocked", "uncertain")
# Events worth showing in the "recent" list; item.done and jira.call would drown the rest.
NOTABLE: tuple[type[Event], ...] = (
    MintRateLimited,
    MintUserRefused,
    MintContextRefused,
    MintRetry,
    SystemTokenWaiting,
    SystemTokenOk,
    JiraRateLimited,
    JiraRetry,
    PauseEvent,
    Resume,
    ItemFailed,
    ItemBlocked,
    ItemUncertain,
)
# Distinct failure reasons kept; beyond this (Jira messages naming each issue...) they are
# counted under OTHER_REASON so memory does not follow job size.
MAX_REASONS = 500
OTHER_REASON = "(other reasons)"
MAX_REASON_LENGTH = 300
# Buckets in the item-rate window: enough resolution for an ETA, constant memory.
_RATE_BUCKETS = 30


@dataclass(frozen=True)
class MintBudget:
    """A mint bucket's budget, for display: ``limit`` mints per ``window_s`` seconds."""

    limit: int
    window_s: float


@dataclass(frozen=True)
class Pause:
    """Work held back: ``scope`` (``kind:detail``), why, and until when (POSIX time, if known)."""

    scope: str
    reason: str
    until: float | None

    @property
    def kind(self) -> str:
        return scope_kind(self.scope)


@dataclass(frozen=True)
class Notable:
    """One event worth showing: when (POSIX time), its name and a one-line description."""

    at: float
    name: str
    text: str


@dataclass
class Counts:
    """Item outcomes, for the whole run or one site."""

    done: int = 0
    failed: int = 0
    skipped: int = 0
    blocked: int = 0
    uncertain: int = 0

    @property
    def finished(self) -> int:
        return self.done + self.failed + self.skipped + self.blocked + self.uncertain

    def add(self, state: str) -> None:
        setattr(self, state, getattr(self, state) + 1)

    def as_dict(self) -> dict[str, int]:
        return {state: getattr(self, state) for state in ITEM_STATES}


def scope_kind(scope: str) -> str:
    """``burst:alpha GET /x`` -> ``burst``; a scope without a kind is its own kind."""
    return scope.split(":", 1)[0]


def reason_text(value: str | None) -> str:
    """A reason as counted and shown: "(no reason given)" for none, cut to a bounded length."""
    text = value if value is not None else "(no reason given)"
    return text if len(text) <= MAX_REASON_LENGTH else text[: MAX_REASON_LENGTH - 1] + "…"


class RunStats:
    """Counts of a run, fed by events. ``clock`` is monotonic (rates, ETA); ``wall`` is POSIX
    time (pause deadlines arrive as POSIX times, the report shows wall times)."""

    def __init__(
        self,
        *,
        total: int | None = None,
        budgets: Mapping[str, MintBudget] | None = None,
        buckets: Mapping[str, str] | None = None,
        clock: Clock = time.monotonic,
        wall: Clock = time.time,
        rate_window_s: float = 60.0,
        notable: int = 8,
    ) -> None:
        self.total = total
        self.budgets: dict[str, MintBudget] = dict(budgets or {})
        self._buckets = dict(buckets or {})  # environment -> bucket
        self._clock = clock
        self._wall = wall
        self.rate_window_s = rate_window_s
        self.started = clock()
        self.started_at = wall()
        self.ended: float | None = None
        self.ended_at: float | None = None

        self.counts = Counts()
        self.sites: dict[str, Counts] = {}
        self.reasons: Counter[tuple[str, str]] = Counter()  # (state, reason code)
        # Each (state, code)'s message when all its items share one ("" when they differ).
        self._messages: dict[tuple[str, str], str] = {}
        self.mints: Counter[str] = Counter()  # per bucket
        self._recent_mints: dict[str, deque[float]] = {}
        self.refused_users: Counter[str] = Counter()  # per reason code
        self.mints_refused = 0  # mints the gateway answered with a refusal or a failure
        self.recovered: Counter[bool] = Counter()  # creates looked up at a resume: found?
        self.blocked_environments: dict[str, str] = {}  # environment -> message
        self.rate_limits: Counter[tuple[str, str]] = Counter()  # (scope kind, reason)
        self.retries: Counter[tuple[str, str]] = Counter()  # ("mint"|"jira", reason)
        self.jira_calls: Counter[str] = Counter()  # "2xx", "4xx", ...
        self.pause_count: Counter[tuple[str, str]] = Counter()  # (scope kind, reason)
        self._pauses: dict[str, Pause] = {}
        self.notable: deque[Notable] = deque(maxlen=notable)
        self._rate: deque[list[float]] = deque()  # [bucket start, items finished in it]

    @classmethod
    def from_config(cls, config: Config, **kwargs: Any) -> RunStats:
        """Stats that know each environment's bucket and each bucket's budget."""
        buckets = {name: env.bucket for name, env in config.environments.items()}
        budgets = {
            env.bucket: MintBudget(env.mint_limit, env.mint_window_s)
            for env in config.environments.values()
        }
        return cls(budgets=budgets, buckets=buckets, **kwargs)

    # -- feeding ----------------------------------------------------------------------------

    def set_total(self, total: int | None) -> None:
        """The number of items, once the plan knows it (None while the source streams)."""
        self.total = total

    def finish(self) -> None:
        """Freeze the duration: the run is over."""
        if self.ended is None:
            self.ended = self._clock()
            self.ended_at = self._wall()

    def event(self, ev: Event, /) -> None:
        now = self._clock()
        match ev:
            case ItemEvent():
                self._item(ev, now)
            case MintOk():
                self._mint(ev.environment, now)
            case MintRateLimited():
                self.rate_limits["mint", ev.shape] += 1
                self._pause(f"mint:{ev.bucket}", f"rate limited ({ev.shape})", ev.until)
            case MintUserRefused():
                self.refused_users[user_refused(ev.reason).code] += 1
                self.mints_refused += 1
            case MintContextRefused():
                self.blocked_environments[ev.environment] = reason_text(ev.message)
                self.mints_refused += 1
            case MintFailed():
                self.mints_refused += 1
            case ItemRecovered():
                self.recovered[ev.found] += 1
            case MintRetry():
                self.retries["mint", reason_text(ev.reason)] += 1
            case JiraRetry():
                self.retries["jira", reason_text(ev.reason)] += 1
            case JiraCall():
                self.jira_calls[f"{ev.status // 100}xx"] += 1
            case JiraRateLimited():
                scope = ev.scope or f"site:{ev.site}"
                reason = ev.reason or "unknown"
                self.rate_limits[scope_kind(scope), reason] += 1
                self._pause(scope, reason, ev.until)
            case PauseEvent():
                self._pause(ev.scope, ev.reason, ev.until)
            case Resume():
                self._pauses.pop(ev.scope, None)
            case SystemTokenWaiting():
                scope = f"system_token:{ev.environment}"
                self._pause(scope, ev.reason or "waiting", None)
            case SystemTokenOk():
                self._pauses.pop(f"system_token:{ev.environment}", None)
        if isinstance(ev, NOTABLE):
            self.notable.append(Notable(self._wall(), ev.name, _describe(ev)))

    def _item(self, ev: ItemEvent, now: float) -> None:
        self.counts.add(ev.state)
        self.sites.setdefault(ev.site, Counts()).add(ev.state)
        if not isinstance(ev, ItemDone):
            key = (ev.state, reason_text(ev.reason))
            if key not in self.reasons and len(self.reasons) >= MAX_REASONS:
                key = (ev.state, OTHER_REASON)
            self.reasons[key] += 1
            message = short(ev.detail, MAX_REASON_LENGTH) if ev.detail else ""
            if self._messages.setdefault(key, message) != message:
                self._messages[key] = ""
        self._count_finished(now)

    def _count_finished(self, now: float) -> None:
        width = self.rate_window_s / _RATE_BUCKETS
        if self._rate and now - self._rate[-1][0] < width:
            self._rate[-1][1] += 1
        else:
            self._rate.append([now, 1.0])
        self._trim_rate(now)

    def _trim_rate(self, now: float) -> None:
        while self._rate and self._rate[0][0] < now - self.rate_window_s:
            self._rate.popleft()

    def _mint(self, env: str, now: float) -> None:
        bucket = self._buckets.get(env, env)
        self.mints[bucket] += 1
        recent = self._recent_mints.setdefault(bucket, deque())
        recent.append(now)
        self._trim_mints(bucket, recent, now)

    def _trim_mints(self, bucket: str, recent: deque[float], now: float) -> None:
        window = self.budgets[bucket].window_s if bucket in self.budgets else 60.0
        while recent and recent[0] <= now - window:
            recent.popleft()

    def _pause(self, scope: str, reason: str, deadline: float | None) -> None:
        current = self._pauses.get(scope)
        if current is None or not self._active(current):
            self.pause_count[scope_kind(scope), reason] += 1
        self._pauses[scope] = Pause(scope, reason, deadline)

    def _active(self, pause: Pause) -> bool:
        return pause.until is None or pause.until > self._wall()

    # -- reading ----------------------------------------------------------------------------

    @property
    def finished(self) -> int:
        return self.counts.finished

    @property
    def left(self) -> int | None:
        return None if self.total is None else max(0, self.total - self.finished)

    def elapsed_s(self) -> float:
        return (self.ended if self.ended is not None else self._clock()) - self.started

    def now_wall(self) -> float:
        return self._wall()

    def mints_in_window(self, bucket: str) -> int:
        """Mints of ``bucket`` within its budget's window, ending now."""
        recent = self._recent_mints.get(bucket)
        if not recent:
            return 0
        self._trim_mints(bucket, recent, self._clock())
        return len(recent)

    def active_pauses(self) -> list[Pause]:
        """Pauses still in force, soonest to end first (open-ended ones last)."""
        live = [p for p in self._pauses.values() if self._active(p)]
        return sorted(live, key=lambda p: (p.until is None, p.until or 0.0, p.scope))

    def item_rate(self) -> float | None:
        """Items finished per second over the recent window; None before any finished."""
        now = self._clock()
        self._trim_rate(now)
        if not self._rate:
            return None
        covered = min(self.rate_window_s, now - self.started)
        if covered <= 0:
            return None
        return sum(count for _, count in self._rate) / covered

    def eta_s(self) -> float | None:
        """Seconds until every item is finished at the recent rate; None if unknowable."""
        left = self.left
        if left is None:
            return None
        if left == 0:
            return 0.0
        rate = self.item_rate()
        if not rate:
            return None
        return left / rate

    def top_reasons(self, n: int) -> list[tuple[str, str, int]]:
        """The ``n`` commonest (state, reason code, count) of items that did not finish done."""
        return [(state, reason, count) for (state, reason), count in self.reasons.most_common(n)]

    def message_of(self, state: str, reason: str) -> str:
        """The message every item of (``state``, ``reason``) carried (Jira's words, redacted
        and cut); "" when they carried none or differ (as a user's account ID makes them)."""
        return self._messages.get((state, reason), "")


def _describe(ev: Event) -> str:
    """One line for the "recent" list. Fields never hold tokens (runner.events), and every
    writer redacts anyway."""
    fields = ev.fields()
    keys = ("environment", "bucket", "site", "scope", "account", "action", "reason", "target",
            "shape")
    parts = [f"{k}={fields[k]}" for k in keys if fields.get(k) not in (None, "")]
    if isinstance(ev, MintContextRefused) and ev.aris:
        parts.append("aris=" + ",".join(ev.aris))
    return " ".join(parts)
