"""The call executor: one Jira request as one user, within the Jira retry policy.

Before each send the request waits for its scopes in ``Cooldowns`` (burst key, issue, site,
quota), then, when the executor has them, for Jira's budgets (``JiraPacer``: points quota, burst
key, per-issue writes), which every answer is reported back to. A 429 pauses the scope that was
limited (``Retry-After`` as a floor with jitter on top, else ``X-RateLimit-Reset``, else
exponential backoff) and defers the request: it spends no attempt and only the deadline bounds
it. A 401 drops the token and mints once more; a second 401 fails. 5xx, timeouts and resets
spend attempts, and are retried only when sending again is safe: an idempotent request, or one
that surely never left (connection refused). A write whose outcome is unknown is ``Uncertain``
at once, never re-sent blindly. Other 4xx fail at once with Jira's messages.

Mint refusals are not caught here: ``UserRefusedError``, ``BlockedEnvironmentError`` and
``SystemTokenError`` from the token provider propagate to the engine, which owns the item's
state (skipped, blocked).
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import structlog

from runner.budgets import Clock, SystemClock
from runner.budgets.cooldown import Cooldowns
from runner.budgets.jira import JiraPacer, Permit
from runner.budgets.quota import measured_cost
from runner.config import RetryPolicy, SiteConfig
from runner.errors import RequestNotSentError, TransportError
from runner.events import NullObserver, Observer
from runner.jira import (
    JiraClient,
    JiraRequest,
    JiraResponse,
    Ok,
    Outcome,
    Permanent,
    RateLimited,
    Transient,
    Unauthorized,
    classify,
)
from runner.ratelimit import Scope, parse_rate_limit, request_scopes
from runner.retry import backoff_delay, rate_limit_delay

log = structlog.get_logger("runner.jira")


class TokenProvider(Protocol):
    """Where user tokens come from (``runner.minting.Minter`` or a test's stand-in)."""

    async def token_for(self, site: SiteConfig, account_id: str) -> str: ...

    # May be a plain or an async method; the executor awaits it when it returns an awaitable.
    def invalidate(self, site: SiteConfig, account_id: str, token: str) -> object: ...


class SendGuard(Protocol):
    """Told when a request goes on the wire and when it is back (see ``execute``)."""

    async def before_send(self) -> None: ...

    def after_send(self) -> None: ...


@dataclass(frozen=True)
class Done:
    response: JiraResponse
    attempts: int = 1  # sends that counted against the policy's attempts
    deferrals: int = 0  # 429s waited out (they spend no attempt)


@dataclass(frozen=True)
class Failed:
    """The call failed for good. ``reason``: "http 404", "unauthorized", "deadline",
    "attempts: <last error>"."""

    reason: str
    status: int | None = None
    messages: tuple[str, ...] = ()
    attempts: int = 0
    deferrals: int = 0


@dataclass(frozen=True)
class Uncertain:
    """A non-idempotent request may or may not have taken effect; it was not sent again."""

    reason: str
    status: int | None = None
    attempts: int = 1
    deferrals: int = 0


CallResult = Done | Failed | Uncertain


@dataclass
class _Tally:
    attempts: int = 0  # failures that spend the policy's attempts
    deferrals: int = 0
    reminted: bool = False
    sends: int = 0


class CallExecutor:
    """Runs Jira requests as users: cooldowns first, then the send, then the policy."""

    def __init__(
        self,
        client: JiraClient,
        tokens: TokenProvider | Mapping[str, TokenProvider],
        cooldowns: Cooldowns,
        policy: RetryPolicy,
        observer: Observer | None = None,
        clock: Clock | None = None,
        *,
        rng: random.Random | None = None,
        budgets: JiraPacer | None = None,
    ) -> None:
        """``tokens``: one provider, or one per environment name (``SiteConfig.environment``).
        ``budgets``: Jira's budgets to pace every send by (none: cooldowns alone)."""
        self._client = client
        self._tokens = tokens
        self._cooldowns = cooldowns
        self._policy = policy
        self._observer: Observer = observer or NullObserver()
        self._clock: Clock = clock or SystemClock()
        self._rng = rng
        self._budgets = budgets

    def _provider(self, site: SiteConfig) -> TokenProvider:
        if isinstance(self._tokens, Mapping):
            return self._tokens[site.environment]
        return self._tokens

    async def execute(
        self,
        site: SiteConfig,
        account_id: str,
        request: JiraRequest,
        *,
        deadline: float | None = None,
        guard: SendGuard | None = None,
    ) -> CallResult:
        """Send ``request`` as ``account_id`` on ``site`` until it is done or can't be.

        ``deadline`` (POSIX) is the run's; by default the policy's ``deadline_s`` from now.
        ``guard`` is told right before each send (once the token and every budget are in hand)
        and right after it: the engine journals the item there, and knows which work is only
        waiting (and may be dropped on a drain) and which is on the wire.
        """
        if deadline is None:
            deadline = self._clock.now() + self._policy.deadline_s
        provider = self._provider(site)
        scopes = request_scopes(site.name, request.method, request.template, request.issue)
        tally = _Tally()
        ctx = {"site": site.name, "method": request.method, "template": request.template}
        while True:
            if not await self._cooldowns.wait(scopes, deadline=deadline):
                return self._deadline(tally, ctx)
            token = await provider.token_for(site, account_id)
            permit: Permit | None = None
            if self._budgets is not None:
                permit = await self._paced(site, request, scopes)
                if permit is None:
                    continue
            if guard is not None:
                try:
                    await guard.before_send()
                except BaseException:
                    if self._budgets is not None and permit is not None:
                        self._budgets.give_back(permit)
                    raise
            tally.sends += 1
            try:
                response = await self._send(site, token, request, guard)
            except TransportError as exc:
                if self._budgets is not None:
                    self._budgets.observe(site.name, request, None)
                safe = request.idempotent or isinstance(exc, RequestNotSentError)
                if not safe:
                    return self._uncertain(exc.reason, None, tally, ctx)
                failed = await self._spend_attempt(exc.reason, None, tally, ctx, deadline)
                if failed is not None:
                    return failed
                continue
            now = self._clock.now()
            outcome = classify(request, response, now, site=site.name)
            if self._budgets is not None:
                self._report(self._budgets, site, request, response, outcome, now)
            self._observer.event("jira.call", **ctx, status=response.status)
            if isinstance(outcome, Ok):
                return Done(response, tally.attempts + 1, tally.deferrals)
            if isinstance(outcome, RateLimited):
                self._defer(outcome, tally, ctx, now)
                continue
            if isinstance(outcome, Unauthorized):
                invalidated = provider.invalidate(site, account_id, token)
                if inspect.isawaitable(invalidated):
                    await invalidated
                if tally.reminted:
                    log.warning("runner.jira.unauthorized", **ctx,
                                category=outcome.failure_category)
                    return Failed("unauthorized", 401, _category(outcome), tally.attempts + 1,
                                  tally.deferrals)
                tally.reminted = True
                self._observer.event("jira.retry", site=site.name, template=request.template,
                                     reason="unauthorized", attempt=tally.sends)
                continue
            if isinstance(outcome, Permanent):
                log.info("runner.jira.failed", **ctx, status=outcome.status,
                         messages=list(outcome.messages))
                return Failed(f"http {outcome.status}", outcome.status, outcome.messages,
                              tally.attempts + 1, tally.deferrals)
            if isinstance(outcome, Transient):
                reason = f"http {outcome.status}"
                if not request.idempotent:
                    return self._uncertain(reason, outcome.status, tally, ctx)
                failed = await self._spend_attempt(
                    reason, outcome.status, tally, ctx, deadline, outcome.retry_after_s
                )
                if failed is not None:
                    return failed

    async def _paced(
        self, site: SiteConfig, request: JiraRequest, scopes: tuple[Scope, ...]
    ) -> Permit | None:
        """Wait for Jira's budgets. None when a 429 paused one of the request's scopes while it
        waited: the permit goes back and the request waits out the pause first."""
        assert self._budgets is not None
        permit = await self._budgets.acquire(site.name, request)
        if self._cooldowns.blocked_until(scopes) is not None:
            self._budgets.give_back(permit)
            return None
        return permit

    @staticmethod
    def _report(
        budgets: JiraPacer, site: SiteConfig, request: JiraRequest, response: JiraResponse,
        outcome: Outcome, now: float,
    ) -> None:
        """Tell the budgets what Jira said: its rate-limit headers, and a read's actual cost."""
        info = (outcome.info if isinstance(outcome, RateLimited)
                else parse_rate_limit(response.headers, now))
        actual = measured_cost(request, response.body) if isinstance(outcome, Ok) else None
        budgets.observe(site.name, request, response.status, info, actual_cost=actual)

    async def _send(
        self, site: SiteConfig, token: str, request: JiraRequest, guard: SendGuard | None
    ) -> JiraResponse:
        try:
            return await self._client.send(site, token, request)
        finally:
            if guard is not None:
                guard.after_send()

    def _defer(
        self, limited: RateLimited, tally: _Tally, ctx: Mapping[str, str], now: float
    ) -> None:
        """Pause the limited scope; the loop's next wait holds this request with the others."""
        tally.deferrals += 1
        delay = rate_limit_delay(
            self._policy,
            retry_after_s=limited.retry_after_s,
            reset_at=limited.reset_at,
            now=now,
            attempt=tally.deferrals,
            rng=self._rng,
        )
        until = now + delay
        reason = limited.reason or ("edge" if limited.info.edge else "unknown")
        self._cooldowns.block(limited.scope, until, reason)
        self._observer.event("jira.rate_limited", site=ctx["site"], scope=str(limited.scope),
                             reason=reason, until=until)
        log.info("runner.jira.rate_limited", **ctx, scope=str(limited.scope), reason=reason,
                 retry_after_s=limited.retry_after_s, reset_at=limited.reset_at,
                 wait_s=round(delay, 3), deferrals=tally.deferrals)

    async def _spend_attempt(
        self,
        reason: str,
        status: int | None,
        tally: _Tally,
        ctx: Mapping[str, str],
        deadline: float,
        retry_after_s: float | None = None,
    ) -> Failed | None:
        """Count a failed try; wait before the next one, or give up. None means: go again."""
        tally.attempts += 1
        if tally.attempts >= self._policy.attempts:
            log.warning("runner.jira.failed", **ctx, reason=reason, attempts=tally.attempts)
            return Failed(f"attempts: {reason}", status, (), tally.attempts, tally.deferrals)
        delay = backoff_delay(self._policy, tally.attempts, self._rng)
        if retry_after_s is not None:
            # A server's Retry-After is a floor; the backoff's jitter still spreads the retries.
            delay = max(delay, retry_after_s + self._rng_uniform())
        now = self._clock.now()
        if now + delay > deadline:
            return self._deadline(tally, ctx)
        self._observer.event("jira.retry", site=ctx["site"], template=ctx["template"],
                             reason=reason, attempt=tally.attempts)
        log.info("runner.jira.retry", **ctx, reason=reason, attempt=tally.attempts,
                 wait_s=round(delay, 3))
        await self._clock.sleep(delay)
        return None

    def _rng_uniform(self) -> float:
        return (self._rng or random).uniform(0.0, self._policy.wait_jitter_s)

    def _deadline(self, tally: _Tally, ctx: Mapping[str, str]) -> Failed:
        log.warning("runner.jira.failed", **ctx, reason="deadline", deferrals=tally.deferrals)
        return Failed("deadline", None, (), tally.attempts, tally.deferrals)

    def _uncertain(
        self, reason: str, status: int | None, tally: _Tally, ctx: Mapping[str, str]
    ) -> Uncertain:
        log.warning("runner.jira.uncertain", **ctx, reason=reason)
        return Uncertain(reason, status, tally.attempts + 1, tally.deferrals)


def _category(outcome: Unauthorized) -> tuple[str, ...]:
    return (outcome.failure_category,) if outcome.failure_category else ()
