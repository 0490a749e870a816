"""Jira's budgets together: every call waits for the points quota, its burst key and, for a
write, its issue; every answer tells them what Jira said.

``JiraPacer.acquire`` waits until a request may leave under all of its budgets and then takes
from all of them at once: nothing is taken while waiting, so a waiter cancelled at any point
has taken nothing. Each budget is a FIFO queue (a lock per burst key, per issue, per tenant
quota, and one for the app's quota); a request queues on its narrow budgets first, then on the
app's quota, always in that order (issue, burst, tenant, app), so no two requests can each hold
what the other waits for. Only the head of a queue sleeps, until its budget is ready; a request
slowed on its own burst key or issue never holds up the app's quota for others.

``observe`` feeds every answer back: actual costs, the quota headers, ``NearLimit``, and the
429s: ``jira-burst-based`` halves that key's rate (AIMD), a ``jira-quota-*`` 429 zeroes that
quota until its reset, and the limited scope is paused for ``Retry-After`` (``pauses``, the
cooldowns of ``runner.budgets.cooldown``): ``permit`` waits those out before the budgets.

While a budget holds work back for ``pause_after_s`` or more, a ``pause`` event names its scope
(``quota:global``, ``quota:<site>:tenant``, ``burst:<site>:<METHOD> <template>``,
``issue:<site>:<key>``); ``resume`` follows when its queue moves freely again.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

from runner.budgets import Clock, SystemClock
from runner.budgets.burst import (
    DEFAULT_CAPACITY_S,
    DEFAULT_CUT_HOLD_S,
    DEFAULT_MIN_RATE,
    DEFAULT_REGROW_PER_S,
    BurstBucket,
    burst_rate,
)
from runner.budgets.cooldown import Cooldowns
from runner.budgets.perissue import DEFAULT_GUARD_S, IssueWrites
from runner.budgets.permit import Pause, Permit, held_scopes, wait_out
from runner.budgets.quota import DEFAULT_BURST, DEFAULT_MARGIN, PointsQuota
from runner.config.configfile import JiraBudgets
from runner.events import BurstCut, Emitter, Observer, QuotaExhausted, QuotaNearLimit, Resume
from runner.events import Pause as PauseEvent
from runner.jira.client import JiraRequest
from runner.jira.ratelimit import (
    REASON_BURST,
    REASON_QUOTA_GLOBAL,
    REASON_QUOTA_TENANT,
    QuotaState,
    RateLimitInfo,
    Scope,
)

DEFAULT_PAUSE_AFTER_S = 1.0
# Readiness within a microsecond counts as now: a wait computed from floats can otherwise come out
# a hair above zero forever (a sleep that moves the clock by less than its resolution).
_EPSILON = 1e-6


@dataclass(frozen=True)
class Taken:
    """What one ``acquire`` took; ``JiraPacer.give_back`` returns it if the call isn't sent."""

    site: str
    request: JiraRequest = field(repr=False)
    at: float
    quotas: tuple[PointsQuota, ...] = field(repr=False)
    bucket: BurstBucket = field(repr=False)
    issue: Scope | None


class _Queue:
    """A FIFO lock (asyncio's wakes its waiters in order) that knows how many wait for it."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0  # the holder and its waiters

    @asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        self.users += 1
        try:
            async with self.lock:
                yield
        finally:
            self.users -= 1

    def waiting(self) -> int:
        return self.users - (1 if self.lock.locked() else 0)


class _Queues:
    """A FIFO lock per scope, kept only while someone holds or waits for it."""

    def __init__(self) -> None:
        self._queues: dict[Scope, _Queue] = {}

    @asynccontextmanager
    async def hold(self, scope: Scope) -> AsyncIterator[None]:
        queue = self._queues.get(scope)
        if queue is None:
            queue = self._queues[scope] = _Queue()
        try:
            async with queue.held():
                yield
        finally:
            if queue.users == 0:
                del self._queues[scope]

    def waiting(self, scope: Scope) -> int:
        queue = self._queues.get(scope)
        return queue.waiting() if queue is not None else 0


class JiraPacer:
    """The points quota (app-wide, and per site under a per-tenant tier), burst buckets per
    (site, template, method) and per-issue write logs, shared by every worker of the process.

    ``tenant_points``: each site also has a quota of its own of that many points per window
    (Jira's per-tenant tier). Off by default; a ``jira-quota-tenant-based`` 429 or a tenant
    quota in ``RateLimit`` turns it on for that site anyway, since Jira has then said it exists.
    """

    def __init__(
        self,
        budgets: JiraBudgets,
        *,
        clock: Clock | None = None,
        observer: Observer | None = None,
        margin: float = DEFAULT_MARGIN,
        quota_burst: float = DEFAULT_BURST,
        tenant_points: int | None = None,
        burst_capacity_s: float = DEFAULT_CAPACITY_S,
        regrow_per_s: float = DEFAULT_REGROW_PER_S,
        min_burst_rate: float = DEFAULT_MIN_RATE,
        cut_hold_s: float = DEFAULT_CUT_HOLD_S,
        issue_guard_s: float = DEFAULT_GUARD_S,
        pause_after_s: float = DEFAULT_PAUSE_AFTER_S,
    ) -> None:
        self.budgets = budgets
        self._clock: Clock = clock or SystemClock()
        self._emit = Emitter(observer)
        self._margin = margin
        self._quota_burst = quota_burst
        self._tenant_points = tenant_points
        self._bucket_args = {
            "capacity_s": burst_capacity_s,
            "regrow_per_s": regrow_per_s,
            "min_rate": min_burst_rate,
            "cut_hold_s": cut_hold_s,
        }
        self._pause_after = pause_after_s
        now = self._clock.now()
        self.quota = self._new_quota(Scope.global_quota(), budgets.quota_points, now)
        self._tenants: dict[str, PointsQuota] = {}
        self._buckets: dict[Scope, BurstBucket] = {}
        self.issues = IssueWrites(budgets.per_issue_2s, budgets.per_issue_30s,
                                  guard_s=issue_guard_s)
        self._queues = _Queues()
        self._quota_lock = _Queue()
        self._paused: set[Scope] = set()
        # What a 429 pauses until its Retry-After; every permit waits these out first.
        self.pauses = Cooldowns(clock=self._clock, observer=observer)

    # -- the budgets -----------------------------------------------------------------------------
    def _new_quota(self, scope: Scope, points: int, now: float,
                   window_s: float | None = None) -> PointsQuota:
        return PointsQuota(scope, points, window_s or self.budgets.quota_window_s, now=now,
                           margin=self._margin, burst=self._quota_burst)

    def tenant_quota(self, site: str, *, create: bool = False, points: int | None = None,
                     window_s: float | None = None) -> PointsQuota | None:
        """The site's own quota; made when per-tenant quotas are on, or ``create`` asks."""
        quota = self._tenants.get(site)
        if quota is None and (create or self._tenant_points is not None):
            size = points or self._tenant_points or self.budgets.quota_points
            quota = self._new_quota(Scope.tenant_quota(site), size, self._clock.now(), window_s)
            self._tenants[site] = quota
        return quota

    def bucket(self, site: str, method: str, template: str) -> BurstBucket:
        """The burst bucket of (site, template, method), made on first use."""
        scope = Scope.burst(site, method, template)
        bucket = self._buckets.get(scope)
        if bucket is None:
            bucket = BurstBucket(scope, burst_rate(self.budgets, method), now=self._clock.now(),
                                 **self._bucket_args)
            self._buckets[scope] = bucket
        return bucket

    # -- acquiring -------------------------------------------------------------------------------
    @asynccontextmanager
    async def permit(
        self, site: str, request: JiraRequest, *, deadline: float | None = None
    ) -> AsyncIterator[Permit]:
        """Wait out the request's pauses, then its budgets; give back on exit unless spent."""
        scopes = held_scopes(site, request)
        while True:
            await wait_out(self.pauses, scopes, deadline)
            taken = await self.acquire(site, request)
            if self.pauses.blocked_until(scopes) is None:
                break
            # A 429 paused one of its scopes while it waited: wait that out first, holding
            # nothing, so the pause isn't charged to the budgets twice.
            self.give_back(taken)
        permit = Permit()
        try:
            yield permit
        finally:
            if not permit.is_spent:
                self.give_back(taken)

    async def acquire(self, site: str, request: JiraRequest) -> Taken:
        """Wait (FIFO) until ``request`` may be sent on ``site`` under every budget, then take
        its share of each. Cancellation at any point takes nothing."""
        bucket = self.bucket(site, request.method, request.template)
        issue = Scope.issue(site, request.issue) if request.issue is not None else None
        tenant = self.tenant_quota(site)
        waited: dict[Scope, float] = {}
        try:
            async with AsyncExitStack() as stack:
                if issue is not None:
                    await stack.enter_async_context(self._queues.hold(issue))
                await stack.enter_async_context(self._queues.hold(bucket.scope))
                if tenant is not None:
                    await stack.enter_async_context(self._queues.hold(tenant.scope))
                while True:
                    while (hold := self._narrow(request, bucket, issue, tenant)) is not None:
                        await self._sleep(*hold, waited)
                    async with self._quota_lock.held():
                        while True:
                            now = self._clock.now()
                            if self._narrow(request, bucket, issue, tenant) is not None:
                                break  # an answer cut a narrow budget meanwhile: queue again
                            ready = self.quota.ready_at(request.cost, now)
                            if ready <= now + _EPSILON:
                                return self._take(site, request, now, bucket, issue, tenant,
                                                  waited)
                            await self._sleep(ready, self.quota.scope, self.quota.reason(now),
                                              waited)
        except BaseException:
            # A waiter leaving without a permit (cancelled) must not leave its pause behind.
            for scope in waited:
                if scope in self._paused and not self._queued(scope):
                    self._resume(scope)
            raise

    def _narrow(self, request: JiraRequest, bucket: BurstBucket, issue: Scope | None,
                tenant: PointsQuota | None) -> tuple[float, Scope, str] | None:
        """The narrow budget holding ``request`` back longest now, if any does:
        (until, scope, reason)."""
        now = self._clock.now()
        holds = [(bucket.ready_at(now), bucket.scope, "burst pacing")]
        if issue is not None:
            holds.append((self.issues.ready_at(issue, now), issue, "per-issue writes"))
        if tenant is not None:
            holds.append((tenant.ready_at(request.cost, now), tenant.scope, tenant.reason(now)))
        latest = max(holds, key=lambda h: h[0])
        return latest if latest[0] > now + _EPSILON else None

    async def _sleep(self, until: float, scope: Scope, reason: str,
                     waited: dict[Scope, float]) -> None:
        wait = until - self._clock.now()
        if wait >= self._pause_after and scope not in self._paused:
            self._paused.add(scope)
            self._emit(PauseEvent(scope=str(scope), reason=reason, until=until))
        waited[scope] = waited.get(scope, 0.0) + wait
        await self._clock.sleep(wait)

    def _take(self, site: str, request: JiraRequest, now: float, bucket: BurstBucket,
              issue: Scope | None, tenant: PointsQuota | None, waited: dict[Scope, float],
              ) -> Taken:
        quotas = (self.quota,) if tenant is None else (tenant, self.quota)
        if issue is not None:
            self.issues.take(issue, now)
        bucket.take(now)
        for quota in quotas:
            quota.take(request.cost, now)
        scopes = [bucket.scope, *(q.scope for q in quotas)]
        if issue is not None:
            scopes.append(issue)
        for scope in scopes:
            if scope in self._paused and (
                waited.get(scope, 0.0) < self._pause_after / 2 or not self._queued(scope)
            ):
                self._resume(scope)
        return Taken(site, request, now, quotas, bucket, issue)

    def _resume(self, scope: Scope) -> None:
        self._paused.discard(scope)
        self._emit(Resume(scope=str(scope)))

    def _queued(self, scope: Scope) -> bool:
        if scope == self.quota.scope:
            return self._quota_lock.waiting() > 0
        return self._queues.waiting(scope) > 0

    def give_back(self, taken: Taken) -> None:
        """``taken``'s request was not sent after all: return what it took."""
        now = self._clock.now()
        for quota in taken.quotas:
            quota.give_back(taken.request.cost, now)
        taken.bucket.give_back(now)
        if taken.issue is not None:
            self.issues.give_back(taken.issue, taken.at)

    # -- observing -------------------------------------------------------------------------------
    def observe(
        self,
        site: str,
        request: JiraRequest,
        status: int | None,
        info: RateLimitInfo | None = None,
        *,
        actual_cost: int | None = None,
        pause: Pause | None = None,
    ) -> None:
        """What Jira answered to ``request`` on ``site`` (``status`` None: no answer came).

        ``info`` is the parsed rate-limit headers; ``actual_cost`` the points the answer shows
        the request cost, when it shows it (``runner.budgets.quota.measured_cost``); ``pause``
        what a 429 holds back, and until when.
        """
        now = self._clock.now()
        if pause is not None:
            self.pauses.block(pause.scope, pause.until, pause.reason)
        cost = float(request.cost)
        tenant = self._tenants.get(site)
        quotas = (self.quota,) if tenant is None else (tenant, self.quota)
        if actual_cost is not None and actual_cost != request.cost:
            for quota in quotas:
                quota.correct(cost, float(actual_cost), now)
        if info is not None:
            self._headers(site, status, info, cost, now)
        for quota in quotas:
            quota.answered(cost)
        if status == 429 and info is not None:
            self._limited(site, request, info, now)

    def _headers(self, site: str, status: int | None, info: RateLimitInfo, cost: float,
                 now: float) -> None:
        for state in info.states:
            quota = self._quota_for(site, state, info)
            if quota is not None and (state.remaining is not None or state.reset_s is not None):
                reset = now + state.reset_s if state.reset_s is not None else None
                quota.report(state.remaining, reset, now, cost, rounded=True)
        if status == 429:
            return  # a 429's X-RateLimit-* describe the limit it hit, maybe not the quota
        if info.remaining is not None and info.limit == self.quota.points:
            self.quota.report(info.remaining, info.reset_at, now, cost)
        if info.near_limit and self.quota.near_limit(now):
            self._emit(QuotaNearLimit(scope=str(self.quota.scope),
                                      remaining=round(self.quota.remaining(now))))

    def _quota_for(self, site: str, state: QuotaState, info: RateLimitInfo
                   ) -> PointsQuota | None:
        """The quota a ``RateLimit`` item reports on, by its name: a tenant's (made if need
        be, sized by the matching ``RateLimit-Policy``), the app's, or none (a burst policy)."""
        name = state.name.lower()
        if "tenant" in name:
            policy = next((p for p in info.policies if p.name == state.name), None)
            return self.tenant_quota(
                site, create=True,
                points=policy.quota if policy is not None else None,
                window_s=policy.window_s if policy is not None else None,
            )
        if "quota" in name:
            return self.quota
        return None

    def _limited(self, site: str, request: JiraRequest, info: RateLimitInfo, now: float) -> None:
        if info.reason == REASON_BURST:
            bucket = self.bucket(site, request.method, request.template)
            if bucket.cut(now):
                self._emit(BurstCut(scope=str(bucket.scope), rate=round(bucket.rate(now), 3)))
            return
        quota: PointsQuota | None = None
        if info.reason == REASON_QUOTA_GLOBAL:
            quota = self.quota
        elif info.reason == REASON_QUOTA_TENANT:
            quota = self.tenant_quota(site, create=True)
        if quota is None:
            return
        until = info.reset_at
        if until is None and info.retry_after_s is not None:
            until = now + info.retry_after_s
        quota.exhausted(until, now)
        self._emit(QuotaExhausted(scope=str(quota.scope), reset_at=quota.reset_at))
