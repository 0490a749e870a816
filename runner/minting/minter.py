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
  call raises ``BlockedEnvironmentError`` with a diagnostic, and no further mint is sent.

Until one mint has succeeded in a context ARI, mints in it go one at a time, so a wrong ARI or
missing scopes cost exactly one refused mint, not one per worker in flight.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp

from runner.budgets import Clock, SystemClock
from runner.budgets.mint import MintBucket, MintBuckets
from runner.config.configfile import Config, EnvironmentConfig, RetryPolicy, SiteConfig
from runner.errors import (
    BlockedEnvironmentError,
    SystemTokenError,
    TransportError,
    UserRefusedError,
)
from runner.events import (
    Emitter,
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

_WORKSPACE_ARI = re.compile(r"^ari:cloud:jira:[^:/\s]+:workspace/[^/\s]+$")


class Minter:
    """Mints and caches user tokens for one environment."""

    def __init__(
        self,
        environment: EnvironmentConfig,
        *,
        gateway: GatewayClient,
        system_tokens: SystemTokenProvider,
        bucket: MintBucket,
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

    @classmethod
    def from_config(
        cls,
        config: Config,
        environment: str,
        *,
        session: aiohttp.ClientSession,
        buckets: MintBuckets,
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
        key = (self.environment.name, site.name, account_id)
        return await self.cache.get(key, lambda: self._mint(site, account_id))

    def invalidate(self, site: SiteConfig, account_id: str, token: str) -> bool:
        """Jira answered 401 to ``token``: drop it (if still cached) so the next call mints."""
        return self.cache.invalidate((self.environment.name, site.name, account_id), token)

    # -- one mint, with its retries -------------------------------------------------------

    async def _mint(self, site: SiteConfig, account_id: str) -> Minted:
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
                self._emit(MintFailed(environment=env, site=site.name, account=account_id,
                                      reason=outcome.reason, attempts=loop.attempts))
                raise outcome
            self._emit(MintRetry(environment=env, reason=outcome.reason, attempt=loop.attempts,
                                 site=site.name, account=account_id, delay_s=round(delay, 2)))
            await self._clock.sleep(delay)

    async def _send(self, site: SiteConfig, account_id: str) -> MintOutcome | TransportError:
        """One mint through the probe gate and the bucket; a transport failure is returned."""
        ari = site.context_ari
        async with self._gate(ari):
            self._raise_if_blocked()
            async with self.bucket.slot():
                # The environment may have been blocked while this mint waited for its slot;
                # the system token is read only now, so a long wait can't outlive it.
                self._raise_if_blocked()
                system_token = await self._system_tokens.get()
                try:
                    outcome = await self._gateway.mint(system_token, ari, account_id)
                except TransportError as exc:
                    return exc
            if isinstance(outcome, SystemTokenRejected):
                self._system_tokens.invalidate(system_token)
            elif isinstance(outcome, Minted):
                register_secret(outcome.token)
                self._proven.add(ari)
            return outcome

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

    def _block(self, site: SiteConfig, outcome: ContextRefused) -> BlockedEnvironmentError:
        env = self.environment.name
        if self._blocked is None:
            self._blocked = context_diagnostic(site, outcome)
            self._emit(MintContextRefused(environment=env, aris=tuple(outcome.context_aris),
                                          message=outcome.message, site=site.name,
                                          request_id=outcome.ids.request_id,
                                          trace_id=outcome.ids.trace_id))
        return BlockedEnvironmentError(env, self._blocked)


def context_diagnostic(site: SiteConfig, outcome: ContextRefused) -> str:
    """What to check when the gateway can't load the app user's permissions: the ARIs sent
    and the four causes found for that message (atlassian-facts.md section 1)."""
    aris = ", ".join(outcome.context_aris)
    expected = f"ari:cloud:jira:{site.cloud_id}:workspace/{site.cloud_id}"
    form_ok = all(_WORKSPACE_ARI.match(a) for a in outcome.context_aris)
    form = (
        "the ARI has the workspace form; check it names this site's cloud ID"
        if form_ok
        else f"the ARI sent is not of the workspace form; expected {expected}"
    )
    ids = ""
    if outcome.ids.request_id or outcome.ids.trace_id:
        ids = f"\n  request_id={outcome.ids.request_id} trace_id={outcome.ids.trace_id}"
    return (
        f"the gateway refused a mint on site {site.name}: {outcome.message}\n"
        f"  context ARIs sent: [{aris}]{ids}\n"
        "  check, in order:\n"
        f"  1. ARI form (sites.{site.name}.context_ari): {form}.\n"
        "  2. Impersonation scopes: the manifest's permissions.scopes is a map and every scope "
        "the job uses has allowImpersonation: true.\n"
        "  3. Deployed: `forge deploy` ran for this environment after that manifest change.\n"
        "  4. Installation upgraded: `forge install --upgrade` ran on the site so it uses the "
        "version with those scopes."
    )
