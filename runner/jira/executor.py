"""The call executor: one Jira request as one user, within the Jira retry policy.

Before each send the request asks the pacer for a permit (``runner.budgets.permit``): it waits
out any 429 pause on its scopes and Jira's budgets (points quota, burst key, per-issue writes),
and every answer is reported back to the pacer. A 429 pauses the scope that was limited
(``Retry-After`` as a floor with jitter on top, else ``X-RateLimit-Reset``, else exponential
backoff) and defers the request: it spends no attempt and only the deadline bounds it. A 401
drops the token and mints once more; a second 401 fails. 5xx, timeouts and resets spend
attempts, and are retried only when sending again is safe: an idempotent request, or one that
surely never left (connection refused). A write whose outcome is unknown is ``Uncertain`` at
once, never re-sent blindly. Other 4xx fail at once with Jira's messages. The loop is
``runner.retry.RetryLoop``'s, shared with minting: the deadline ends it on any pass.

Mint refusals are not caught here: ``UserRefusedError``, ``BlockedEnvironmentError`` and
``SystemTokenError`` from the token provider propagate to the engine, which owns the item's
state (skipped, blocked).
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from runner.budgets import Clock, SystemClock
from runner.budgets.permit import Pacer, PastDeadline, Pause
from runner.budgets.quota import measured_cost
from runner.config.configfile import RetryPolicy, SiteConfig
from runner.errors import RequestNotSentError, TransportError
from runner.events import (
    Emitter,
    JiraCall,
    JiraFailed,
    JiraRateLimited,
    JiraRetry,
    JiraUncertain,
    Observer,
)
from runner.jira.client import (
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
from runner.jira.ratelimit import parse_rate_limit
from runner.retry import Retry, RetryLoop, rate_limit_delay, retry_delay

OnSend = Callable[[], Awaitable[None]]
OnWait = Callable[[], None]


class TokenProvider(Protocol):
    """Where user tokens come from (``runner.minting.Minter`` or a test's stand-in)."""

    async def token_for(self, site: SiteConfig, account_id: str) -> str: ...

    def invalidate(self, site: SiteConfig, account_id: str, token: str) -> object: ...


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


class CallExecutor:
    """Runs Jira requests as users: a permit first, then the send, then the policy."""

    def __init__(
        self,
        client: JiraClient,
        tokens: Mapping[str, TokenProvider],
        pacer: Pacer,
        policy: RetryPolicy,
        observer: Observer | None = None,
        clock: Clock | None = None,
        *,
        rng: random.Random | None = None,
    ) -> None:
        """``tokens``: the token provider of each environment (``SiteConfig.environment``).
        ``pacer``: what every send asks for leave (``JiraPacer``; ``Unpaced`` for none)."""
        self._client = client
        self._tokens = tokens
        self._pacer = pacer
        self._policy = policy
        self._emit = Emitter(observer)
        self._clock: Clock = clock or SystemClock()
        self._rng = rng

    async def execute(
        self,
        site: SiteConfig,
        account_id: str,
        request: JiraRequest,
        *,
        deadline: float | None = None,
        on_send: OnSend | None = None,
        on_wait: OnWait | None = None,
    ) -> CallResult:
        """Send ``request`` as ``account_id`` on ``site`` until it is done or can't be.

        ``deadline`` (POSIX) is the run's; by default the policy's ``deadline_s`` from now.
        ``on_send`` is awaited right before each send, once the token and the permit are in
        hand: the engine journals the item there (durable before effect); if it raises, nothing
        is sent and the permit is given back. ``on_wait`` is called when, its answer in hand
        (or none), the request must wait before it is tried again (a backoff, a 429's pause, a
        fresh mint after a 401): nothing of it is on the wire until the next ``on_send``, so
        the engine may cancel it there on a drain. Between the two the request is on the wire;
        a call that returns was on the wire to the end.
        """
        loop = RetryLoop(self._policy, self._clock, deadline=deadline)
        provider = self._tokens[site.environment]
        ctx: dict[str, Any] = {"site": site.name, "method": request.method,
                               "template": request.template}
        reminted = False
        sends = 0
        while True:
            token = await provider.token_for(site, account_id)
            try:
                async with self._pacer.permit(site.name, request,
                                              deadline=loop.deadline) as permit:
                    if on_send is not None:
                        await on_send()
                    permit.spent()
                    sends += 1
                    sent = time.perf_counter()
                    answer = await self._send(site, token, request)
                    took = time.perf_counter() - sent
            except PastDeadline as exc:
                left = exc.until - self._clock.now()
                return self._deadline(loop, ctx, f"the budget it needs is paused for another "
                                      f"{left:.0f} s, past the run's deadline")
            if isinstance(answer, TransportError):
                self._pacer.observe(site.name, request, None)
                if not (request.idempotent or isinstance(answer, RequestNotSentError)):
                    return self._uncertain(answer.reason, None, loop, ctx)
                step: CallResult | Retry = Retry(
                    retry_delay(self._policy, loop.attempts + 1, rng=self._rng), answer.reason)
                status: int | None = None
                asked: float | None = None
            else:
                now = self._clock.now()
                outcome = classify(request, answer, now, site=site.name)
                asked = outcome.retry_after_s if isinstance(outcome, RateLimited) else None
                self._emit(JiraCall(**ctx, status=answer.status, duration_s=took))
                status = answer.status
                if isinstance(outcome, Unauthorized):
                    self._pacer.observe(site.name, request, answer.status,
                                        parse_rate_limit(answer.headers, now))
                    provider.invalidate(site, account_id, token)
                    if reminted:
                        return self._failed(ctx, Failed("unauthorized", 401, _category(outcome),
                                                        loop.attempts + 1, loop.deferrals),
                                            category=outcome.failure_category)
                    reminted = True
                    self._emit(JiraRetry(**ctx, reason="unauthorized", attempt=sends))
                    if on_wait is not None:
                        on_wait()
                    continue
                step = self._verdict(site, request, answer, outcome, loop, ctx, now)
            if not isinstance(step, Retry):
                return step
            refused = loop.admit(step)
            if refused == "attempts":
                return self._failed(ctx, Failed(f"attempts: {step.reason}", status, (),
                                                loop.attempts, loop.deferrals))
            if refused is not None:
                if asked is not None and not step.spends:
                    return self._deadline(loop, ctx, f"the server asked to wait {asked:g} s "
                                          "(Retry-After), past the run's deadline")
                break
            if on_wait is not None:
                on_wait()
            if step.spends:
                self._emit(JiraRetry(**ctx, reason=step.reason, attempt=loop.attempts,
                                     wait_s=round(step.delay, 3)))
                await self._clock.sleep(step.delay)
            # A deferral sleeps nowhere here: its pause holds the next permit, and every
            # other request of the limited scope with it.
        return self._deadline(loop, ctx)

    async def _send(
        self, site: SiteConfig, token: str, request: JiraRequest
    ) -> JiraResponse | TransportError:
        try:
            return await self._client.send(site, token, request)
        except TransportError as exc:
            return exc

    def _verdict(
        self, site: SiteConfig, request: JiraRequest, response: JiraResponse, outcome: Outcome,
        loop: RetryLoop, ctx: Mapping[str, Any], now: float,
    ) -> CallResult | Retry:
        """Tell the pacer what Jira said; the call's result, or how to try again."""
        if isinstance(outcome, RateLimited):
            delay = rate_limit_delay(self._policy, retry_after_s=outcome.retry_after_s,
                                     reset_at=outcome.reset_at, now=now,
                                     attempt=loop.deferrals + 1, rng=self._rng)
            until = now + delay
            reason = outcome.reason or ("edge" if outcome.info.edge else "unknown")
            self._pacer.observe(site.name, request, response.status, outcome.info,
                                pause=Pause(outcome.scope, until, reason))
            self._emit(JiraRateLimited(**ctx, scope=str(outcome.scope), reason=reason,
                                       until=until, retry_after_s=outcome.retry_after_s,
                                       reset_at=outcome.reset_at, wait_s=round(delay, 3),
                                       deferrals=loop.deferrals + 1))
            return Retry(delay, reason, spends=False)
        actual = measured_cost(request, response.body) if isinstance(outcome, Ok) else None
        self._pacer.observe(site.name, request, response.status,
                            parse_rate_limit(response.headers, now), actual_cost=actual)
        if isinstance(outcome, Ok):
            return Done(response, loop.attempts + 1, loop.deferrals)
        if isinstance(outcome, Permanent):
            return self._failed(ctx, Failed(f"http {outcome.status}", outcome.status,
                                            outcome.messages, loop.attempts + 1, loop.deferrals))
        assert isinstance(outcome, Transient)
        reason = f"http {outcome.status}" + (f" with {outcome.problem}" if outcome.problem
                                             else "")
        if not request.idempotent:
            return self._uncertain(reason, outcome.status, loop, ctx)
        return Retry(retry_delay(self._policy, loop.attempts + 1,
                                 retry_after_s=outcome.retry_after_s, rng=self._rng), reason)

    def _deadline(self, loop: RetryLoop, ctx: Mapping[str, Any], why: str | None = None
                  ) -> Failed:
        return self._failed(ctx, Failed("deadline", None, (why,) if why else (), loop.attempts,
                                        loop.deferrals))

    def _failed(self, ctx: Mapping[str, Any], failed: Failed, *,
                category: str | None = None) -> Failed:
        self._emit(JiraFailed(**ctx, reason=failed.reason, status=failed.status,
                              messages=failed.messages, attempts=failed.attempts,
                              deferrals=failed.deferrals, category=category))
        return failed

    def _uncertain(
        self, reason: str, status: int | None, loop: RetryLoop, ctx: Mapping[str, Any]
    ) -> Uncertain:
        self._emit(JiraUncertain(**ctx, reason=reason))
        return Uncertain(reason, status, loop.attempts + 1, loop.deferrals)


def _category(outcome: Unauthorized) -> tuple[str, ...]:
    return (outcome.failure_category,) if outcome.failure_category else ()
