"""Verifying a Forge Invocation Token (FIT): signature against a cached JWKS, then the claims.

Order of checks (atlassian-facts.md section 2): the header names a ``kid``; the key with that
``kid`` comes from the JWKS (cached; an unknown ``kid`` fetches the set again, once for every
request waiting on it, and not again for a backoff interval, so a flood of forged kids costs one
fetch, not one per request); ``alg`` is the key's own (RS256 for Forge's RSA keys: a header that
asks for another algorithm, ``none`` or HS256 with the public key as secret, is refused);
signature; ``iss = forge/invocation-token``; ``aud`` = the app's ARI; ``exp``/``nbf``/``iat``
against our clock, with a small leeway; ``jti`` not seen before (a FIT captured and sent again
within its life is refused: its signature covers the invocation, not the system-token header
that comes with it). Then the ``app`` claim must name an installation.

Any failure raises ``InvocationTokenError``, whose reason never holds the token.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import jwt
import structlog

from runner.config.ari import AriError, validate_ari
from runner.errors import InvocationTokenError

log = structlog.get_logger("runner.remote.fit")

ISSUER = "forge/invocation-token"
_API_BASE = re.compile(r"^https?://[^\s/]+(?:/[^\s]*)?/ex/jira/(?P<cloud>[A-Za-z0-9-]+)/?$")
_SITE_ARI = re.compile(r"^ari:cloud:jira::site/(?P<cloud>[A-Za-z0-9-]+)$")
DEFAULT_API_BASE = "https://api.atlassian.com/ex/jira/{cloud_id}"


@dataclass(frozen=True)
class Invocation:
    """What a verified FIT says about the invocation."""

    installation_id: str
    cloud_id: str
    api_base_url: str
    environment_type: str
    environment_id: str
    app_id: str
    jti: str
    expires_at: float


class JwksCache:
    """The keys of one JWKS URL, fetched when needed, shared by every request."""

    def __init__(
        self,
        url: str,
        session: aiohttp.ClientSession,
        *,
        clock: Callable[[], float],
        refetch_min_s: float = 30.0,
        refetch_max_s: float = 600.0,
        max_age_s: float = 3600.0,
        timeout_s: float = 10.0,
    ) -> None:
        self.url = url
        self._session = session
        self._clock = clock
        self._refetch_min = refetch_min_s
        self._refetch_max = max(refetch_max_s, refetch_min_s)
        self._max_age = max_age_s
        self._timeout = timeout_s
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = -math.inf
        self._next_allowed = -math.inf
        self._misses = 0  # fetches in a row that did not bring the kid asked for
        self._generation = 0  # fetches finished (successful or not)
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def loaded(self) -> bool:
        """Whether keys are held; if none ever were, one fetch now (within the backoff)."""
        if not self._keys and self._clock() >= self._next_allowed:
            generation = self._generation
            async with self._lock:
                if self._generation == generation:
                    try:
                        await self._fetch(None)
                    finally:
                        self._generation += 1
        return bool(self._keys)

    async def key(self, kid: str) -> jwt.PyJWK:
        """The key named ``kid``; InvocationTokenError when the JWKS has none such."""
        now = self._clock()
        key = self._keys.get(kid)
        if key is not None and now - self._fetched_at < self._max_age:
            return key
        if now < self._next_allowed:
            if key is not None:
                return key  # stale, but fetching again now would hammer the CDN
            raise InvocationTokenError(f"unknown key id {kid!r} (JWKS fetched again later)")
        generation = self._generation
        async with self._lock:
            # Requests that waited on a fetch use its result: one fetch for all of them.
            if self._generation == generation:
                try:
                    await self._fetch(kid)
                finally:
                    # Counted once it is over, so requests that came during it wait for it.
                    self._generation += 1
        key = self._keys.get(kid)
        if key is None:
            raise InvocationTokenError(f"unknown key id {kid!r} (not in the JWKS)")
        return key

    async def _fetch(self, wanted: str | None) -> None:
        self.fetches += 1
        try:
            keys = await self._download()
        except InvocationTokenError as exc:
            self._misses += 1
            self._next_allowed = self._clock() + self._backoff()
            log.warning("runner.remote.jwks.fetch_failed", url=self.url, reason=exc.reason)
            return
        self._keys = keys
        self._fetched_at = self._clock()
        if (wanted in keys) if wanted is not None else bool(keys):
            # A rotation right after this fetch may still fetch at once.
            self._misses = 0
            self._next_allowed = self._fetched_at
        else:
            self._misses += 1
            self._next_allowed = self._fetched_at + self._backoff()
        log.info("runner.remote.jwks.fetched", url=self.url, kids=sorted(keys))

    def _backoff(self) -> float:
        if self._misses <= 1:
            return self._refetch_min
        return min(self._refetch_max, self._refetch_min * 2.0 ** (self._misses - 1))

    async def _download(self) -> dict[str, jwt.PyJWK]:
        try:
            timeout = aiohttp.ClientTimeout(total=self._timeout)
            async with self._session.get(self.url, timeout=timeout) as resp:
                if resp.status != 200:
                    raise InvocationTokenError(f"JWKS at {self.url} answered HTTP {resp.status}")
                body = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise InvocationTokenError(f"JWKS at {self.url} unreachable ({exc!r})") from None
        try:
            doc = json.loads(body)
        except ValueError:
            raise InvocationTokenError(f"JWKS at {self.url} is not JSON") from None
        raw = doc.get("keys") if isinstance(doc, dict) else None
        if not isinstance(raw, list):
            raise InvocationTokenError(f"JWKS at {self.url} has no keys list")
        keys: dict[str, jwt.PyJWK] = {}
        for entry in raw:
            if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
                continue
            if entry.get("use", "sig") != "sig":
                continue
            try:
                keys[entry["kid"]] = jwt.PyJWK(entry)
            except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
                log.warning("runner.remote.jwks.key_skipped", kid=entry["kid"])
        return keys


class FitVerifier:
    """Verifies FITs for one app: ``aud`` must be ``app_id``."""

    def __init__(
        self,
        jwks: JwksCache,
        app_id: str,
        *,
        clock: Callable[[], float],
        leeway_s: float = 10.0,
    ) -> None:
        self.jwks = jwks
        self.app_id = app_id
        self._clock = clock
        self._leeway = leeway_s
        # jti -> when its FIT stops being accepted anyway; with a heap to forget them in order.
        self._seen: dict[str, float] = {}
        self._forget: list[tuple[float, str]] = []

    async def verify(self, authorization: str | None) -> Invocation:
        """The invocation an ``Authorization: Bearer <FIT>`` header proves."""
        token = _bearer(authorization)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvocationTokenError("not a JWT") from None
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvocationTokenError("the token's header names no key id (kid)")
        key = await self.jwks.key(kid)
        algorithm = key.algorithm_name
        if header.get("alg") != algorithm:
            raise InvocationTokenError(
                f"algorithm {header.get('alg')!r} is not the key's ({algorithm})"
            )
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key.key,
                algorithms=[algorithm],
                audience=self.app_id,
                issuer=ISSUER,
                # Time is checked below against our clock, which tests may compress.
                options={
                    "require": ["iss", "aud", "exp", "iat", "jti"],
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidSignatureError:
            raise InvocationTokenError("bad signature") from None
        except jwt.InvalidAudienceError:
            raise InvocationTokenError(f"wrong aud (expected {self.app_id})") from None
        except jwt.InvalidIssuerError:
            raise InvocationTokenError(f"wrong iss (expected {ISSUER})") from None
        except jwt.MissingRequiredClaimError as exc:
            raise InvocationTokenError(f"missing claim {exc.claim}") from None
        except jwt.PyJWTError as exc:
            raise InvocationTokenError(f"invalid token ({type(exc).__name__})") from None
        self._check_times(claims)
        invocation = _invocation(claims, self.app_id)
        self._first_use(invocation)
        return invocation

    def _first_use(self, invocation: Invocation) -> None:
        """Refuse a ``jti`` seen before, until its FIT would be refused as expired anyway."""
        now = self._clock()
        while self._forget and self._forget[0][0] <= now:
            _, jti = heapq.heappop(self._forget)
            if self._seen.get(jti, math.inf) <= now:
                del self._seen[jti]
        jti = invocation.jti
        if not jti:
            raise InvocationTokenError("the token has no jti")
        if jti in self._seen:
            raise InvocationTokenError("a token seen before (same jti): a replay")
        until = invocation.expires_at + self._leeway
        self._seen[jti] = until
        heapq.heappush(self._forget, (until, jti))

    def _check_times(self, claims: Mapping[str, Any]) -> None:
        now = self._clock()
        exp, iat, nbf = (_number(claims, name) for name in ("exp", "iat", "nbf"))
        if exp is None or iat is None:
            raise InvocationTokenError("exp and iat must be numbers")
        if exp <= now - self._leeway:
            raise InvocationTokenError(f"expired {now - exp:.0f} s ago")
        if nbf is not None and nbf > now + self._leeway:
            raise InvocationTokenError(f"not valid for another {nbf - now:.0f} s (nbf)")
        if iat > now + self._leeway:
            raise InvocationTokenError(f"issued {iat - now:.0f} s in the future (iat)")


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise InvocationTokenError("no Authorization header")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvocationTokenError("the Authorization header is not a Bearer token")
    return token.strip()


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _invocation(claims: Mapping[str, Any], app_id: str) -> Invocation:
    app = claims.get("app")
    if not isinstance(app, dict):
        raise InvocationTokenError("no app claim")
    if app.get("id", app_id) != app_id:
        raise InvocationTokenError("app.id is not the token's aud")
    installation_id = app.get("installationId")
    if not isinstance(installation_id, str):
        raise InvocationTokenError("no app.installationId")
    try:
        validate_ari(installation_id, product="ecosystem", type="installation")
    except AriError:
        raise InvocationTokenError("app.installationId is not an installation ARI") from None
    api_base = app.get("apiBaseUrl")
    cloud_id = _cloud_id(claims, app, api_base)
    if cloud_id is None:
        raise InvocationTokenError("no cloud ID (app.apiBaseUrl, context.cloudId or contexts)")
    if not isinstance(api_base, str) or not re.fullmatch(r"https?://\S+", api_base):
        api_base = DEFAULT_API_BASE.format(cloud_id=cloud_id)
    env = app.get("environment")
    env = env if isinstance(env, dict) else {}
    return Invocation(
        installation_id=installation_id,
        cloud_id=cloud_id,
        api_base_url=api_base.rstrip("/"),
        environment_type=str(env.get("type", "")),
        environment_id=str(env.get("id", "")),
        app_id=app_id,
        jti=str(claims.get("jti", "")),
        expires_at=float(claims["exp"]),
    )


def _cloud_id(claims: Mapping[str, Any], app: Mapping[str, Any], api_base: Any) -> str | None:
    """From ``app.apiBaseUrl`` (``.../ex/jira/<cloudId>``), else ``context.cloudId``, else a
    site ARI among ``app.installation.contexts``."""
    if isinstance(api_base, str) and (m := _API_BASE.match(api_base)):
        return m.group("cloud")
    context = claims.get("context")
    if isinstance(context, dict) and isinstance(context.get("cloudId"), str):
        cloud: str = context["cloudId"]
        if re.fullmatch(r"[A-Za-z0-9-]+", cloud):
            return cloud
    installation = app.get("installation")
    contexts = installation.get("contexts") if isinstance(installation, dict) else None
    for item in contexts if isinstance(contexts, list) else ():
        ari = item.get("ari") if isinstance(item, dict) else item
        if isinstance(ari, str) and (m := _SITE_ARI.match(ari)):
            return m.group("cloud")
    return None
