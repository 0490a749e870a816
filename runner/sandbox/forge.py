"""The sandbox playing Forge: invoking a remote (``forge-runner serve``) as Forge would.

What it does, per atlassian-facts.md section 2:

- signs Forge Invocation Tokens (RS256) with its own RSA key, made at start, and serves the
  public half at ``GET /.well-known/jwks.json`` (counting fetches, so a test can see the cache);
- sends a system token (an HS256 JWT with ``exp`` that the sandbox's gateway accepts) in
  ``x-forge-oauth-system`` on every invocation;
- installs the app on sites (lifecycle ``avi:forge:installed:app`` / ``upgraded``), each
  installation with its own ``installationId`` (a new one on reinstall);
- delivers scheduled triggers as POSTs, on a compressed clock (``time_scale`` simulated seconds
  per real second), each installation at a seeded offset within the interval;
- redelivers (``max_redeliveries`` times, ``redelivery_delay_s`` apart) when the remote answers
  non-2xx or not within ``answer_timeout_s`` real seconds, or when an answer is "lost" (seeded,
  or asked for); sends some deliveries twice (seeded, or asked for).

Every invocation and every mint that reaches the gateway is logged with one sequence number,
so a test can tell which came first (a trigger's answer before its job's first mint).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from runner.sandbox.config import ForgeSettings, ForgeTrigger
from runner.sandbox.gateway import PATHS as GATEWAY_PATHS
from runner.sandbox.systemtokens import issue_system_token
from runner.sandbox.world import World

JWKS_PATH = "/.well-known/jwks.json"
ISSUER = "forge/invocation-token"
INSTALLED = "avi:forge:installed:app"
UPGRADED = "avi:forge:upgraded:app"
INTERVALS = {"fiveMinute": 300.0, "hour": 3600.0, "day": 86400.0, "week": 604800.0}
_WORKSPACE = re.compile(r"^ari:cloud:jira:(?P<cloud>[^:]+):")


@dataclass(frozen=True)
class Delivery:
    """One POST to the remote, as Forge saw it."""

    seq: int  # order among deliveries and mints
    what: str  # the trigger's key, or the lifecycle event
    site: str
    attempt: int  # 0 first delivery, 1.. redeliveries
    status: int | None  # None: no answer in time, or the connection failed
    lost: bool  # answered, but the answer counted as lost (a redelivery follows)
    duplicate: bool  # the second copy of a duplicated delivery
    at: float  # world clock when the answer came (or the attempt gave up)


@dataclass(frozen=True)
class MintSeen:
    seq: int
    cloud_id: str
    at: float


@dataclass
class ForgePlatform:
    """Forge's side: keys, installations, deliveries. Lives in ``world.parts["forge"]``."""

    world: World
    settings: ForgeSettings
    remote_url: str = ""
    base_url: str = ""  # the sandbox's own URL (for app.apiBaseUrl), known once it serves
    jwks_fetches: int = 0
    deliveries: list[Delivery] = field(default_factory=list)
    mints: list[MintSeen] = field(default_factory=list)
    # Every system token and FIT sent, so a test can look for them where they must not be.
    sent_secrets: list[str] = field(default_factory=list, repr=False)
    _seq: int = 0
    _generation: dict[str, int] = field(default_factory=dict)  # site -> installs so far
    _installed: dict[str, str] = field(default_factory=dict)  # site -> installation ID
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _session: aiohttp.ClientSession | None = None
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = f"sandbox-forge-{uuid.uuid4().hex[:8]}"
        self._rng = random.Random(self.world.config.seed)
        self.remote_url = self.remote_url or self.settings.remote_url

    # -- keys and tokens ------------------------------------------------------------------

    def jwks(self) -> dict[str, Any]:
        public = RSAAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
        return {"keys": [{**public, "kid": self.kid, "alg": "RS256", "use": "sig"}]}

    def installation_id(self, site: str) -> str:
        """The site's current installation ID (installing it if need be is the caller's)."""
        return self._installed[site]

    @property
    def installed(self) -> dict[str, str]:
        return dict(self._installed)

    def fit(self, site: str, module_key: str = "", *, ttl_s: float | None = None,
            **overrides: Any) -> str:
        """A FIT for an invocation on ``site``; ``overrides`` replace top-level claims."""
        cloud_id = self._cloud_id(site)
        now = self.world.clock()
        app_id = self.settings.app_id
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": app_id,
            "iat": int(now),
            "nbf": int(now),
            "exp": int(now + (self.settings.fit_ttl_s if ttl_s is None else ttl_s)),
            "jti": str(uuid.uuid4()),
            "app": {
                "id": app_id,
                "installationId": self._installed.get(site) or self._new_installation(site),
                "apiBaseUrl": f"{self.base_url}/ex/jira/{cloud_id}",
                "environment": {
                    "type": self.settings.environment_type,
                    "id": f"ari:cloud:ecosystem::environment/{_uuid(app_id, 'env')}",
                },
                "installation": {"contexts": [f"ari:cloud:jira::site/{cloud_id}"]},
                "module": {"key": module_key},
            },
            "context": {"cloudId": cloud_id, "moduleKey": module_key},
        }
        claims.update(overrides)
        token = jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid})
        self.sent_secrets.append(token)
        return token

    def system_token(self) -> str:
        token = issue_system_token(self.world.config, self.settings.environment,
                                   now=self.world.clock())
        self.sent_secrets.append(token)
        return token

    # -- lifecycle and triggers -----------------------------------------------------------

    async def install(self, site: str) -> list[Delivery]:
        """Install the app on ``site`` (a new installation ID if it was installed before)."""
        self._new_installation(site)
        self._wake.set()
        return await self._deliver(self.settings.lifecycle_path, INSTALLED, site,
                                   {"eventType": INSTALLED})

    async def upgrade(self, site: str) -> list[Delivery]:
        return await self._deliver(self.settings.lifecycle_path, UPGRADED, site,
                                   {"eventType": UPGRADED})

    async def trigger(self, key: str, site: str, *, duplicate: bool | None = None,
                      lose_answers: int | None = None) -> list[Delivery]:
        """Deliver trigger ``key`` for ``site`` now; ``duplicate``/``lose_answers`` force what
        the seeded rates otherwise decide."""
        trigger = self._trigger(key)
        return await self._deliver(trigger.path, trigger.key, site, None, trigger=trigger,
                                   duplicate=duplicate, lose_answers=lose_answers)

    def start_schedule(self) -> None:
        """Deliver every trigger on its interval, for every installed site, until cleanup."""
        self._spawn(self._schedule())

    async def _schedule(self) -> None:
        scale = self.settings.time_scale
        start_real = time.monotonic()

        def now() -> float:  # simulated seconds since the schedule started
            return (time.monotonic() - start_real) * scale

        due: dict[tuple[str, str], float] = {}
        while True:
            self._wake.clear()
            for trigger in self.settings.triggers:
                interval = INTERVALS[trigger.interval]
                spread = interval if trigger.spread_s < 0 else trigger.spread_s
                for site in list(self._installed):
                    key = (trigger.key, site)
                    if key not in due:
                        due[key] = now() + self._rng.uniform(0, spread)
                    if now() >= due[key]:
                        due[key] += interval
                        self._spawn(self.trigger(trigger.key, site))
            wait = min((t - now() for t in due.values()), default=math.inf)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(),
                                       timeout=None if wait == math.inf else max(wait, 0) / scale)

    async def _deliver(self, path: str, what: str, site: str, body: dict[str, Any] | None, *,
                       trigger: ForgeTrigger | None = None, duplicate: bool | None = None,
                       lose_answers: int | None = None) -> list[Delivery]:
        if duplicate is None:
            duplicate = trigger is not None and self._rng.random() < trigger.duplicate_rate
        copies = [self._attempts(path, what, site, body, trigger, lose_answers, False)]
        if duplicate:
            copies.append(self._attempts(path, what, site, body, trigger, 0, True))
        results = await asyncio.gather(*copies)
        return [d for result in results for d in result]

    async def _attempts(self, path: str, what: str, site: str, body: dict[str, Any] | None,
                        trigger: ForgeTrigger | None, lose_answers: int | None,
                        duplicate: bool) -> list[Delivery]:
        out: list[Delivery] = []
        for attempt in range(self.settings.max_redeliveries + 1):
            if attempt:
                await asyncio.sleep(self.settings.redelivery_delay_s / self.settings.time_scale)
            status = await self._post(path, what, site, body)
            if lose_answers is not None:
                lost = attempt < lose_answers
            else:
                lost = trigger is not None and self._rng.random() < trigger.lost_answer_rate
            lost = lost and status is not None
            delivery = Delivery(self._next_seq(), what, site, attempt, status, lost, duplicate,
                                self.world.clock())
            self.deliveries.append(delivery)
            out.append(delivery)
            if status is not None and 200 <= status < 300 and not lost:
                break
        return out

    async def _post(self, path: str, what: str, site: str,
                    body: dict[str, Any] | None) -> int | None:
        if not self.remote_url:
            raise RuntimeError("sandbox.forge.remote_url is not set: where is the remote?")
        cloud_id = self._cloud_id(site)
        payload = body if body is not None else {
            "context": {"cloudId": cloud_id, "moduleKey": what},
            "contextToken": uuid.uuid4().hex,
        }
        headers = {
            "Authorization": f"Bearer {self.fit(site, what)}",
            "x-forge-oauth-system": self.system_token(),
            "x-b3-traceid": uuid.uuid4().hex[:16],
            "x-b3-spanid": uuid.uuid4().hex[:16],
        }
        session = self._client()
        try:
            timeout = aiohttp.ClientTimeout(total=self.settings.answer_timeout_s)
            async with session.post(self.remote_url.rstrip("/") + path, json=payload,
                                    headers=headers, timeout=timeout) as resp:
                await resp.read()
                return resp.status
        except (aiohttp.ClientError, TimeoutError):
            return None

    # -- inside ---------------------------------------------------------------------------

    def _trigger(self, key: str) -> ForgeTrigger:
        for trigger in self.settings.triggers:
            if trigger.key == key:
                return trigger
        known = ", ".join(t.key for t in self.settings.triggers) or "none"
        raise KeyError(f"no trigger {key!r} in sandbox.forge.triggers ({known})")

    def _cloud_id(self, site: str) -> str:
        config = self.world.config.sites.get(site)
        if config is None:
            raise KeyError(f"no site {site!r} in the sandbox")
        return config.cloud_id

    def _new_installation(self, site: str) -> str:
        generation = self._generation.get(site, 0) + 1
        self._generation[site] = generation
        cloud_id = self._cloud_id(site)
        inst = f"ari:cloud:ecosystem::installation/{_uuid(cloud_id, str(generation))}"
        self._installed[site] = inst
        return inst

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    def _spawn(self, coro: Awaitable[Any]) -> None:
        async def run() -> None:
            await coro

        task = asyncio.ensure_future(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def serving(self, url: str) -> None:
        """The sandbox is up at ``url``: install the configured sites, start the schedule."""
        self.base_url = url
        if self.settings.install and self.remote_url:
            for site in self.settings.install:
                self._spawn(self.install(site))
        if self.settings.schedule and self.settings.triggers and self.remote_url:
            self.start_schedule()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()

    def report(self) -> dict[str, Any]:
        return {
            "installed": dict(self._installed),
            "jwks_fetches": self.jwks_fetches,
            "deliveries": [d.__dict__ for d in self.deliveries],
        }


def _uuid(*parts: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "forge-runner-sandbox:" + ":".join(parts)))


def install(app: web.Application, world: World) -> ForgePlatform:
    """Serve the JWKS, log mints as they reach the gateway, and keep Forge in the world."""
    forge = ForgePlatform(world, world.config.forge)
    world.parts["forge"] = forge
    world.reporters["forge"] = forge.report

    async def jwks(_: web.Request) -> web.Response:
        forge.jwks_fetches += 1
        return web.json_response(forge.jwks())

    @web.middleware
    async def log_mints(request: web.Request,
                        handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                        ) -> web.StreamResponse:
        if request.method == "POST" and request.path in GATEWAY_PATHS:
            cloud_id = ""
            with contextlib.suppress(ValueError, AttributeError, TypeError, KeyError):
                # The body is cached by aiohttp: the gateway reads it again.
                doc = json.loads(await request.read())
                ari = doc["variables"]["input"]["contextIds"][0]
                m = _WORKSPACE.match(ari)
                cloud_id = m.group("cloud") if m else ""
            forge.mints.append(MintSeen(forge._next_seq(), cloud_id, world.clock()))
        return await handler(request)

    async def act(request: web.Request) -> web.Response:
        """``POST /_sandbox/forge/{install|upgrade|trigger}`` with ``{"site": ...}`` (and
        ``"trigger": key``): invoke the remote now, as Forge would; answers the deliveries."""
        try:
            body = await request.json()
            site = str(body["site"])
            action = request.match_info["action"]
            if action == "install":
                done = await forge.install(site)
            elif action == "upgrade":
                done = await forge.upgrade(site)
            else:
                done = await forge.trigger(str(body["trigger"]), site)
        except (ValueError, KeyError, TypeError, RuntimeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"deliveries": [d.__dict__ for d in done]})

    app.router.add_get(JWKS_PATH, jwks)
    app.router.add_post(r"/_sandbox/forge/{action:install|upgrade|trigger}", act)
    app.middlewares.append(log_mints)

    async def cleanup(_: web.Application) -> None:
        await forge.close()

    app.on_cleanup.append(cleanup)
    return forge
