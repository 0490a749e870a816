"""Jira's budgets shared by every process on one journal: ``permit`` takes from the store.

The same answer to "may this request go now?" as ``runner.budgets.jira.JiraPacer``, but every
budget is a row of the budget store (``runner.budgets.store.calls``), judged by the database's
clock, so processes on one journal stay inside Jira's budgets together. Within a process, the
requests of one burst key (and of one issue) queue on a FIFO lock so only the head of each asks
the store; the app's quota is contested by those heads, a few at most.

What Jira answers is stored for everyone, in the background (``observe`` is called from the
executor without waiting): a 429's pause, a burst 429's cut, a per-issue 429's tighter spacing
(from its ``RateLimit-Policy`` when Jira names the window, else 1.5 times the spacing), the
quota's size and window from ``RateLimit-Policy``, what is left from ``RateLimit`` and
``X-RateLimit-Remaining`` (theirs wins when smaller), ``NearLimit``, and a quota 429.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from runner.budgets import Clock, SystemClock
from runner.budgets.burst import (
    DEFAULT_CAPACITY_S,
    DEFAULT_CUT_HOLD_S,
    DEFAULT_MIN_RATE,
    DEFAULT_REGROW_PER_S,
    burst_rate,
)
from runner.budgets.cooldown import Cooldowns
from runner.budgets.jira import DEFAULT_PAUSE_AFTER_S, _Queues
from runner.budgets.perissue import DEFAULT_GUARD_S
from runner.budgets.permit import PastDeadline, Pause, Permit, held_scopes, wait_out
from runner.budgets.quota import DEFAULT_BURST, DEFAULT_MARGIN
from runner.budgets.sharedmint import Background
from runner.budgets.store import BudgetStore
from runner.budgets.store.calls import (
    BurstTerms,
    CallKeys,
    QuotaNews,
    QuotaTerms,
    call_give_back,
    call_take,
    cut_burst,
    learn_issue_interval,
    quota_news,
)
from runner.budgets.store.programs import pause as store_pause
from runner.config.configfile import JiraBudgets
from runner.events import BurstCut, Emitter, Observer, QuotaExhausted, Resume
from runner.events import Pause as PauseEvent
from runner.jira.client import JiraRequest
from runner.jira.ratelimit import (
    REASON_BURST,
    REASON_PER_ISSUE,
    REASON_QUOTA_GLOBAL,
    REASON_QUOTA_TENANT,
    RateLimitInfo,
    Scope,
)

# What is left is stored at most this often per quota: every answer carries it.
NEWS_EVERY_S = 0.25
# A per-issue 429 without its window: space that site's writes this much further apart.
ISSUE_SLOWDOWN = 1.5


@dataclass(frozen=True)
class QuotaSeen:
    """The app quota's points used in its window, as the last take here read it (``at``: this
    process's clock), for the status page: the rows themselves are the database's."""

    used: float
    at: float


class SharedJiraPacer:
    """The points quota, burst keys and per-issue spacing of every process on ``store``."""

    def __init__(self, budgets: JiraBudgets, store: BudgetStore, *,
                 clock: Clock | None = None, observer: Observer | None = None,
                 margin: float = DEFAULT_MARGIN, quota_burst: float = DEFAULT_BURST,
                 issue_guard_s: float = DEFAULT_GUARD_S,
                 pause_after_s: float = DEFAULT_PAUSE_AFTER_S, serve: bool = False) -> None:
        """``serve``: the pacer of serve's runs, which may spend the share of every quota
        (``budgets.serve_reserve``) that the others keep for them."""
        self.budgets = budgets
        self._store = store
        self._clock: Clock = clock or SystemClock()
        self._emit = Emitter(observer)
        self._quota = QuotaTerms(budgets.quota_points, budgets.quota_window_s, margin,
                                 quota_burst, budgets.serve_reserve, serve)
        self._guard = issue_guard_s
        self._issue_interval = (30.0 + issue_guard_s) / budgets.per_issue_30s
        self._issue_interval = max(self._issue_interval,
                                   (2.0 + issue_guard_s) / budgets.per_issue_2s)
        # Jira's two per-issue windows, each lengthened by the guard (it counts arrivals, not
        # departures); the average spacing above is only the baseline that learning tightens.
        self._issue_windows = ((budgets.per_issue_2s, 2.0 + issue_guard_s),
                               (budgets.per_issue_30s, 30.0 + issue_guard_s))
        self._learned: dict[str, float] = {}  # site -> per-issue spacing this process stored
        self._pause_after = pause_after_s
        self.quota_seen: QuotaSeen | None = None
        self._queues = _Queues()
        self._background = Background()
        self._news_at: dict[str, float] = {}
        self._policy: dict[str, tuple[int | None, float | None]] = {}
        self._tenants: set[str] = set()
        # This process's own view of 429 pauses: it waits them out before asking the store.
        self.pauses = Cooldowns(clock=self._clock, observer=observer)

    @property
    def serve(self) -> bool:
        return self._quota.serve

    def for_serve(self) -> SharedJiraPacer:
        """This pacer as serve's runs take from it: the same store, queues and pauses, paced
        by serve's clock of each quota (a worker holds one pacer for every run it works on)."""
        twin = copy.copy(self)
        twin._quota = dataclasses.replace(self._quota, serve=True)
        return twin

    def _burst(self, method: str) -> BurstTerms:
        return BurstTerms(burst_rate(self.budgets, method), DEFAULT_CAPACITY_S,
                          DEFAULT_REGROW_PER_S, DEFAULT_MIN_RATE, DEFAULT_CUT_HOLD_S)

    def _keys(self, site: str, request: JiraRequest) -> CallKeys:
        held = sorted(str(s) for s in held_scopes(site, request))
        issue = str(Scope.issue(site, request.issue)) if request.issue is not None else None
        return CallKeys(tuple(held), str(Scope.burst(site, request.method, request.template)),
                        str(Scope.global_quota()), str(Scope.tenant_quota(site)), issue,
                        f"issuerate:{site}", 0.0, self._issue_windows)

    @asynccontextmanager
    async def permit(self, site: str, request: JiraRequest, *, deadline: float | None = None
                     ) -> AsyncIterator[Permit]:
        """Wait out the request's pauses and budgets, for every process; give back on exit
        unless spent."""
        scopes = held_scopes(site, request)
        keys = self._keys(site, request)
        burst = self._burst(request.method)
        cost = float(request.cost)
        async with self._queues.hold(Scope.burst(site, request.method, request.template)):
            paused_scope: str | None = None
            while True:
                await wait_out(self.pauses, scopes, deadline)
                grant = await self._store.run(call_take(keys, cost, burst, self._quota))
                if grant.ok:
                    if grant.used is not None:
                        self.quota_seen = QuotaSeen(grant.used, self._clock.now())
                    break
                until = self._clock.now() + grant.wait_s
                if grant.paused and deadline is not None and until > deadline:
                    raise PastDeadline(until)
                if grant.wait_s >= self._pause_after and paused_scope is None:
                    paused_scope = grant.scope
                    self._emit(PauseEvent(scope=grant.scope, reason=grant.reason, until=until))
                await self._clock.sleep(grant.wait_s)
            if paused_scope is not None:
                self._emit(Resume(scope=paused_scope))
        permit = Permit()
        try:
            yield permit
        finally:
            if not permit.is_spent:
                self._background.start(
                    self._store.run(call_give_back(keys, cost, burst, self._quota)))

    def observe(self, site: str, request: JiraRequest, status: int | None,
                info: RateLimitInfo | None = None, *, actual_cost: int | None = None,
                pause: Pause | None = None) -> None:
        """What Jira answered: stored for every process, in the background."""
        del actual_cost  # corrected by what Jira says is left, which counts it exactly
        now = self._clock.now()
        if pause is not None:
            self.pauses.block(pause.scope, pause.until, pause.reason)
            self._background.start(self._store.run(
                store_pause(str(pause.scope), pause.until - now, pause.reason)))
        if info is None:
            return
        if status == 429:
            self._limited(site, request, info, now)
        else:
            self._news(site, info, now)

    def _limited(self, site: str, request: JiraRequest, info: RateLimitInfo, now: float
                 ) -> None:
        if info.reason == REASON_BURST:
            key = str(Scope.burst(site, request.method, request.template))
            self._background.start(self._cut(key, self._burst(request.method)))
        elif info.reason == REASON_PER_ISSUE:
            self._learn_issue(site, info)
        elif info.reason in (REASON_QUOTA_GLOBAL, REASON_QUOTA_TENANT):
            tenant = info.reason == REASON_QUOTA_TENANT
            scope = Scope.tenant_quota(site) if tenant else Scope.global_quota()
            reset_in = (info.reset_at - now if info.reset_at is not None
                        else info.retry_after_s)
            self._emit(QuotaExhausted(scope=str(scope),
                                      reset_at=None if reset_in is None else now + reset_in))
            self._background.start(self._store.run(quota_news(
                QuotaNews(str(scope), reset_in_s=reset_in, exhausted=True), self._quota,
                make=tenant)))

    async def _cut(self, scope: str, burst: BurstTerms) -> None:
        rate = await self._store.run(cut_burst(scope, burst))
        if rate is not None:
            self._emit(BurstCut(scope=scope, rate=round(rate, 3)))

    def _learn_issue(self, site: str, info: RateLimitInfo) -> None:
        current = max(self._issue_interval, self._learned.get(site, 0.0))
        shown = [(p.window_s + self._guard) / p.quota for p in info.policies
                 if "issue" in p.name and p.quota and p.window_s]
        interval = max(shown) if shown else current * ISSUE_SLOWDOWN
        if interval <= current:
            return
        self._learned[site] = interval
        self._background.start(self._store.run(learn_issue_interval(f"issuerate:{site}",
                                                                    interval)))

    def _news(self, site: str, info: RateLimitInfo, now: float) -> None:
        """Quota headers of a successful answer, stored at most every ``NEWS_EVERY_S``."""
        items: list[tuple[str, QuotaNews, bool]] = []
        for state in info.states:
            tenant = "tenant" in state.name.lower()
            if not tenant and "quota" not in state.name.lower():
                continue
            scope = str(Scope.tenant_quota(site) if tenant else Scope.global_quota())
            policy = next((p for p in info.policies if p.name == state.name), None)
            items.append((scope, QuotaNews(
                scope, state.remaining, state.reset_s,
                policy.quota if policy else None, policy.window_s if policy else None),
                tenant))
        app = str(Scope.global_quota())
        if not any(scope == app for scope, _, _ in items):
            policy = next((p for p in info.policies
                           if "quota" in p.name and "tenant" not in p.name), None)
            remaining = info.remaining if info.limit == (
                policy.quota if policy and policy.quota else self._quota.points) else None
            items.append((app, QuotaNews(app, remaining, None,
                                         policy.quota if policy else None,
                                         policy.window_s if policy else None,
                                         near_limit=info.near_limit), False))
        for scope, news, tenant in items:
            policy_key = (news.points, news.window_s)
            changed = news.points is not None and self._policy.get(scope) != policy_key
            due = now - self._news_at.get(scope, 0.0) >= NEWS_EVERY_S
            if tenant and scope not in self._tenants:
                self._tenants.add(scope)
                changed = True
            if not (changed or (due and (news.remaining is not None or news.near_limit))):
                continue
            self._news_at[scope] = now
            self._policy[scope] = policy_key
            self._background.start(self._store.run(quota_news(news, self._quota, make=tenant)))

    async def settle(self) -> None:
        """Every store write started so far is done."""
        await self._background.settle()
