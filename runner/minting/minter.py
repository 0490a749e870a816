"""The minter of one app environment: a user's token, through cache, budget and gateway.

``token_for`` answers from the token cache; a miss mints once (single flight), inside the
environment's mint bucket, and acts on the gateway's answer:

- rate-limited (any shape): pause the bucket for every worker, ``Retry-After`` as a floor, else
  ``X-RateLimit-Reset``, else the mint policy's backoff; try again without spending an attempt
  (only the policy's deadline bounds it);
- 5xx, timeout, reset: retried by the mint policy (attempts, backoff, deadline);
- system token refused (401): read a fresh one and try once more;
- user refused: ``UserRefusedError``, remembered so that user is never minted again;
- context refused: the environment is blocked at this first refusal; every current and later
  call raises ``BlockedEnvironmentError`` with a diagnostic, and no further mint is sent;
- failed for good (an answer no rule understands, ``GatewayError``; or a transport failure once
  the policy's attempts or deadline are spent): that user's mints fail with the reason, now
  and for the rest of the run, and other users go on. But the gateway itself is unusable when
  no connection could be made, or when ``block_after_failed_mints`` users in a row failed the
  same way: the environment is blocked, as by a context refusal, with a one-line diagnostic;
- no system token within ``max_wait_s``: the environment is blocked too.

Once blocked, every mint still waiting (for the probe gate, a bucket slot, a system token, a
retry's backoff) ends at once with ``BlockedEnvironmentError``: none takes a slot.

Until one mint has succeeded in a context ARI, mints in it go one at a time, so a wrong ARI or
missing scopes cost exactly one refused mint, not one per worker in flight.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, TypeVar

import aiohttp

from runner.budgets import Clock, SystemClock
from runner.budgets.mint import MintBucket, MintBuckets
from runner.budgets.sharedmint import SharedMintBucket, SharedMintBuckets
from runner.config.configfile import Config, EnvironmentConfig, RetryPolicy, SiteConfig
from runner.errors import (
    BlockedEnvironmentError,
    GatewayError,
    RequestNotSentError,
    SystemTokenError,
    TransportError,
    UserRefusedError,
)
from runner.events import (
    Emitter,
    GatewayCall,
    MintContextRefused,
    MintFailed,
    MintOk,
    MintRetry,
    MintSystemTokenRejected,
    MintUserRefused,
    Observer,
)
from runner.events import MintRateLimited as MintRateLimitedEvent
from runner.logs.redact import register_secret
from runner.minting.failures import MintFailure, again, context_diagnostic, failure_kind
from runner.minting.gateway import (
    ContextRefused,
    GatewayClient,
    Minted,
    MintOutcome,
    MintRateLimited,
    SystemTokenRejected,
    UserRefused,
)
from runner.minting.system_tokens import SystemTokenProvider
from runner.minting.user_tokens import TokenCache
from runner.retry import Retry, RetryLoop, rate_limit_delay

T = TypeVar("T")


class Minter:
    """Mints and caches user tokens for one environment."""

    def __init__(
        self,
        environment: EnvironmentConfig,
        *,
        gateway: GatewayClient,
        system_tokens: SystemTokenProvider,
        bucket: MintBucket | SharedMintBucket,
        cache: TokenCache,
        retry: RetryPolicy,
        observer: Observer | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.environment = environment
        self._gateway = gateway
        self._system_tokens = system_tokens
        self.bucket = bucket
        self.cache = cache
        self._retry = retry
        self._emit = Emitter(observer)
        self._clock: Clock = clock or SystemClock()
        self._rng = rng
        # Why the environment is blocked, and users refused: kept as values, not exceptions, so
        # each raise is a fresh exception (re-raising one object grows its traceback forever).
        self._blocked: str | None = None
        self._refused: dict[tuple[str, str], tuple[str, str | None]] = {}
        self._proven: set[str] = set()  # context ARIs a mint has succeeded in
        self._probes: dict[str, asyncio.Lock] = {}
        # Users whose mint failed for good: how to raise their failure again.
        self._failed: dict[tuple[str, str], Callable[[], MintFailure]] = {}
        self._in_a_row: tuple[str, int] = ("", 0)  # the last final failure's kind, and how often
        self._waits: set[asyncio.Timeout] = set()  # mints waiting their turn, ended on a block

    @classmethod
    def from_config(
        cls,
        config: Config,
        environment: str,
        *,
        session: aiohttp.ClientSession,
        buckets: MintBuckets | SharedMintBuckets,
        observer: Observer | None = None,
        clock: Clock | None = None,
        cache: TokenCache | None = None,
    ) -> Minter:
        """The minter of ``environment`` as ``config`` describes it; its bucket from
        ``buckets``, so environments naming one bucket share it."""
        env = config.environments[environment]
        clock = clock or SystemClock()
        return cls(
            env,
            gateway=GatewayClient(
                session,
                env.gateway_url,
                messages=config.gateway_messages,
                timeout_s=config.runner.request_timeout_s,
                clock=clock.now,
            ),
            system_tokens=SystemTokenProvider(
                env.system_token, env.name, clock=clock, observer=observer
            ),
            bucket=buckets.for_environment(env),
            cache=cache
            or TokenCache(refresh_margin_s=config.runner.token_refresh_margin_s, clock=clock),
            retry=config.retry_mint,
            observer=observer,
            clock=clock,
        )

    @property
    def blocked(self) -> BlockedEnvironmentError | None:
        """Why this environment can't mint, once a context refusal said so."""
        if self._blocked is None:
            return None
        return BlockedEnvironmentError(self.environment.name, self._blocked)

    async def token_for(self, site: SiteConfig, account_id: str) -> str:
        """``account_id``'s token on ``site``: cached, or minted once for every caller."""
        if site.environment != self.environment.name:
            raise ValueError(f"site {site.name} belongs to environment {site.environment}")
        self._raise_if_blocked()
        refused = self._refused.get((site.name, account_id))
        if refused is not None:
            raise UserRefusedError(account_id, *refused)
        failed = self._failed.get((site.name, account_id))
        if failed is not None:
            raise failed()
        key = (self.environment.name, site.name, account_id)
        return await self.cache.get(key, lambda: self._mint(site, account_id))

    def invalidate(self, site: SiteConfig, account_id: str, token: str) -> bool:
        """Jira answered 401 to ``token``: drop it (if still cached) so the next call mints."""
        return self.cache.invalidate((self.environment.name, site.name, account_id), token)

    # -- one mint, with its retries -------------------------------------------------------

    async def _mint(self, site: SiteConfig, account_id: str) -> Minted:
        try:
            minted = await self._mint_retrying(site, account_id)
        except SystemTokenError as exc:
            self._block_with(f"no system token to mint with: {exc.reason}; check "
                             f"environments.{self.environment.name}.system_token")
            raise
        except (GatewayError, TransportError) as exc:
            self._failed_for_good(site, account_id, exc)
            raise
        self._in_a_row = ("", 0)
        return minted

    async def _mint_retrying(self, site: SiteConfig, account_id: str) -> Minted:
        env = self.environment.name
        loop = RetryLoop(self._retry, self._clock)
        fresh_system_token = False
        while True:
            outcome = await self._send(site, account_id)
            now = self._clock.now()
            if isinstance(outcome, Minted):
                self._emit(MintOk(environment=env, site=site.name, account=account_id,
                                  ttl_s=outcome.ttl_s, request_id=outcome.request_id,
                                  trace_id=outcome.trace_id))
                return outcome
            if isinstance(outcome, MintRateLimited):
                self._pause(outcome, now, loop, account_id)
                continue
            if isinstance(outcome, SystemTokenRejected):
                if fresh_system_token:
                    raise SystemTokenError(env, "the gateway refused a freshly read system "
                                           "token too (HTTP 401)")
                fresh_system_token = True
                self._emit(MintSystemTokenRejected(
                    environment=env, reason="system token rejected", attempt=loop.attempts + 1,
                    request_id=outcome.ids.request_id, trace_id=outcome.ids.trace_id))
                continue
            if isinstance(outcome, UserRefused):
                self._refused[(site.name, account_id)] = (outcome.reason, outcome.ids.request_id)
                self._emit(MintUserRefused(environment=env, site=site.name, account=account_id,
                                           reason=outcome.reason,
                                           request_id=outcome.ids.request_id,
                                           trace_id=outcome.ids.trace_id))
                raise UserRefusedError(account_id, outcome.reason, outcome.ids.request_id)
            if isinstance(outcome, ContextRefused):
                raise self._block(site, outcome)
            # A transport failure: the mint may not have been processed.
            delay = rate_limit_delay(self._retry, retry_after_s=outcome.retry_after,
                                     reset_at=None, now=now, attempt=loop.attempts + 1,
                                     rng=self._rng)
            if loop.admit(Retry(delay, outcome.reason)) is not None:
                raise outcome  # reported as MintFailed by ``_mint``
            self._emit(MintRetry(environment=env, reason=outcome.reason, attempt=loop.attempts,
                                 site=site.name, account=account_id, delay_s=round(delay, 2)))
            await self._unless_blocked(self._clock.sleep(delay))

    async def _send(self, site: SiteConfig, account_id: str) -> MintOutcome | TransportError:
        """One mint through the probe gate and the bucket; a transport failure is returned."""
        ari = site.context_ari
        async with AsyncExitStack() as held:
            system_token = await self._unless_blocked(self._take_turn(held, ari))
            sent = time.perf_counter()
            try:
                outcome = await self._gateway.mint(system_token, ari, account_id)
            except TransportError as exc:
                self._emit(GatewayCall(environment=self.environment.name, outcome="transport",
                                       duration_s=time.perf_counter() - sent))
                return exc
            except GatewayError:
                self._emit(GatewayCall(environment=self.environment.name, outcome="error",
                                       duration_s=time.perf_counter() - sent))
                raise
            self._emit(GatewayCall(environment=self.environment.name,
                                   outcome=_outcome_name(outcome),
                                   duration_s=time.perf_counter() - sent))
            if isinstance(outcome, SystemTokenRejected):
                self._system_tokens.invalidate(system_token)
            elif isinstance(outcome, Minted):
                register_secret(outcome.token)
                self._proven.add(ari)
            return outcome

    async def _take_turn(self, held: AsyncExitStack, ari: str) -> str:
        """Wait for the probe gate and a bucket slot (kept in ``held`` for the send), then for
        a system token: read only now, so a long wait for the slot can't outlive it."""
        await held.enter_async_context(self._gate(ari))
        self._raise_if_blocked()
        await held.enter_async_context(self.bucket.slot())
        self._raise_if_blocked()
        return await self._system_tokens.get()

    async def _unless_blocked(self, wait: Coroutine[Any, Any, T]) -> T:
        """Await ``wait``, ended at once by a block of the environment: work waiting its turn
        is blocked then and there, not one at a time as each wait would end."""
        window = asyncio.timeout(None)
        try:
            async with window:
                self._waits.add(window)
                try:
                    return await wait
                finally:
                    self._waits.discard(window)
        except TimeoutError:
            if window.expired() and self._blocked is not None:
                raise BlockedEnvironmentError(self.environment.name, self._blocked) from None
            raise

    @asynccontextmanager
    async def _gate(self, ari: str) -> AsyncIterator[None]:
        """Until a mint in ``ari`` has succeeded, let one mint at a time through."""
        if ari not in self._proven:
            lock = self._probes.setdefault(ari, asyncio.Lock())
            await lock.acquire()
            try:
                if ari not in self._proven:
                    yield
                    return
            finally:
                lock.release()
        yield

    def _past_deadline(self, account: str) -> TransportError:
        return TransportError(f"mint for {account}",
                              f"still rate limited at the mint deadline "
                              f"({self._retry.deadline_s:g} s)", status=429)

    def _pause(self, outcome: MintRateLimited, now: float, loop: RetryLoop, account: str) -> None:
        """Pause the bucket for every worker; the next try waits for its slot, not here."""
        delay = rate_limit_delay(self._retry, retry_after_s=outcome.retry_after_s,
                                 reset_at=outcome.reset_at, now=now,
                                 attempt=loop.deferrals + 1, rng=self._rng)
        until = now + delay
        bucket = self.bucket.name
        self._emit(MintRateLimitedEvent(
            bucket=bucket, until=until, shape=outcome.shape, environment=self.environment.name,
            retry_after_s=outcome.retry_after_s, reset_at=outcome.reset_at,
            request_id=outcome.ids.request_id, trace_id=outcome.ids.trace_id))
        if loop.admit(Retry(delay, "rate limited", spends=False)) is not None:
            raise self._past_deadline(account)
        self.bucket.pause_until(until, f"mint rate limited ({outcome.shape})")

    # -- blocking -------------------------------------------------------------------------

    def _raise_if_blocked(self) -> None:
        if self._blocked is not None:
            raise BlockedEnvironmentError(self.environment.name, self._blocked)

    def _block_with(self, diagnostic: str) -> BlockedEnvironmentError:
        """Block the environment (the first reason stays) and end every mint waiting its turn."""
        if self._blocked is None:
            self._blocked = diagnostic
            now = asyncio.get_running_loop().time()
            for window in list(self._waits):
                window.reschedule(now)
        return BlockedEnvironmentError(self.environment.name, self._blocked)

    def _failed_for_good(self, site: SiteConfig, account_id: str, exc: MintFailure) -> None:
        """Remember ``account_id``'s failure; block the environment if the gateway itself is
        at fault: unreachable, or the same failure for several users in a row."""
        env = self.environment
        self._failed[(site.name, account_id)] = again(exc)
        kind = failure_kind(exc)
        last, count = self._in_a_row
        count = count + 1 if kind == last else 1
        self._in_a_row = (kind, count)
        self._emit(MintFailed(environment=env.name, site=site.name, account=account_id,
                              reason=exc.reason, kind=kind, in_a_row=count))
        check = (f"check environments.{env.name}.gateway_url, the network and any proxy in "
                 "between")
        if isinstance(exc, RequestNotSentError):
            self._block_with(f"the gateway at {env.gateway_url} is unreachable ({exc.reason}); "
                             f"{check}")
        elif count >= env.block_after_failed_mints:
            self._block_with(f"the gateway at {env.gateway_url} failed the mints of {count} "
                             f"users in a row the same way ({exc.reason}); {check}")

    def _block(self, site: SiteConfig, outcome: ContextRefused) -> BlockedEnvironmentError:
        env = self.environment.name
        if self._blocked is None:
            self._emit(MintContextRefused(environment=env, aris=tuple(outcome.context_aris),
                                          message=outcome.message, site=site.name,
                                          request_id=outcome.ids.request_id,
                                          trace_id=outcome.ids.trace_id))
        return self._block_with(context_diagnostic(site, outcome))


_OUTCOMES: dict[type, str] = {
    Minted: "ok",
    MintRateLimited: "rate_limited",
    UserRefused: "user_refused",
    ContextRefused: "context_refused",
    SystemTokenRejected: "system_token_rejected",
}


def _outcome_name(outcome: object) -> str:
    """A mint answer's bounded name, for the metrics."""
    return _OUTCOMES.get(type(outcome), "error")
