"""Set-up shared by the call executor's loopback tests (this module holds no tests; the
tests beside it import it by its module name, as pytest puts this folder on the path).

An executor wired to a served sandbox: real HTTP, real 429 pauses (an ``Unpaced`` pacer), user
tokens issued by the sandbox's world directly (no gateway), an observer that records events and
lets a test wait for one, and the requests the tests send.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp
from aiohttp import web

from runner.budgets.permit import Unpaced
from runner.config.configfile import RetryPolicy, SiteConfig
from runner.events import Event
from runner.jira.client import JiraClient, JiraRequest
from runner.jira.executor import CallExecutor
from runner.sandbox.app import RunningSandbox
from runner.sandbox.config import JiraLimits, SandboxConfig
from runner.sandbox.jira.adf import text as adf
from runner.sandbox.testing import (
    ACME_ACTIVE,
    CLOUD_A,
    CLOUD_B,
    GLOBEX_ACTIVE,
    INSTALLATION_A,
    INSTALLATION_B,
    make_sandbox_config,
    workspace_ari,
)
from runner.sandbox.world import JiraArrival, World

# The type of conftest's start_sandbox fixture (conftest is pytest's to load, not to import).
StartSandbox = Callable[..., AbstractAsyncContextManager[RunningSandbox]]

API = "/rest/api/3"
ACME_USER = ACME_ACTIVE[0]
GLOBEX_USER = GLOBEX_ACTIVE[0]
ISSUE_T = f"{API}/issue/{{issueIdOrKey}}"
PROPERTY_T = f"{ISSUE_T}/properties/{{propertyKey}}"
COMMENT_T = f"{ISSUE_T}/comment"

# Fast and small: tests compress time through configuration, never through long waits.
FAST = RetryPolicy(attempts=3, wait_initial_s=0.02, wait_max_s=0.1, wait_jitter_s=0.02,
                   deadline_s=30.0)


def sandbox_config(**limits: Any) -> SandboxConfig:
    """The standard two-site world, Jira's limits loose unless a test tightens one."""
    loose = JiraLimits(quota_points=1_000_000, burst_get_post=1000, burst_put_delete=1000,
                       per_issue_2s=1000, per_issue_30s=1000)
    return replace(make_sandbox_config(), jira_limits=replace(loose, **limits))


def myself() -> JiraRequest:
    return JiraRequest("GET", f"{API}/myself", f"{API}/myself")


def get_issue(key: str) -> JiraRequest:
    return JiraRequest("GET", f"{API}/issue/{key}", ISSUE_T)


def put_property(key: str, prop: str = "p", value: Any = None) -> JiraRequest:
    return JiraRequest("PUT", f"{API}/issue/{key}/properties/{prop}", PROPERTY_T,
                       json={"v": 1} if value is None else value, issue=key)


def add_comment(key: str, text: str = "hello", body: Any = None) -> JiraRequest:
    return JiraRequest("POST", f"{API}/issue/{key}/comment", COMMENT_T,
                       json={"body": adf(text)} if body is None else body,
                       idempotent=False, issue=key)


def site(name: str, cloud_id: str, base_url: str) -> SiteConfig:
    installation = INSTALLATION_A if cloud_id == CLOUD_A else INSTALLATION_B
    return SiteConfig(name, cloud_id, installation, "dev", base_url, workspace_ari(cloud_id))


class WorldTokens:
    """Tokens issued by the sandbox's world, cached per user, like ``Minter`` does.

    ``bad_first``: how many tokens the sandbox does not know to hand out before real ones.
    """

    def __init__(self, world: World, *, bad_first: int = 0) -> None:
        self.world = world
        self.bad_left = bad_first
        self.cache: dict[tuple[str, str], str] = {}
        self.issued: Counter[tuple[str, str]] = Counter()
        self.invalidated: list[tuple[str, str]] = []

    async def token_for(self, site: SiteConfig, account_id: str) -> str:
        key = (site.cloud_id, account_id)
        if key not in self.cache:
            if self.bad_left > 0:
                self.bad_left -= 1
                self.cache[key] = f"not-a-token-{self.issued[key]}"
            else:
                self.cache[key] = self.world.issue_user_token(site.cloud_id, account_id, "dev",
                                                              3600)
            self.issued[key] += 1
        return self.cache[key]

    def invalidate(self, site: SiteConfig, account_id: str, token: str) -> None:
        key = (site.cloud_id, account_id)
        if self.cache.get(key) == token:
            del self.cache[key]
        self.invalidated.append(key)


class Recorder:
    """An observer keeping every event; ``seen(name)`` waits for the first of a name."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self._first: dict[str, asyncio.Event] = {}

    def _event_for(self, name: str) -> asyncio.Event:
        return self._first.setdefault(name, asyncio.Event())

    def event(self, ev: Event, /) -> None:
        self.events.append((ev.name, ev.fields()))
        self._event_for(ev.name).set()

    async def seen(self, name: str) -> None:
        await self._event_for(name).wait()

    def named(self, name: str) -> list[dict[str, Any]]:
        return [f for n, f in self.events if n == name]


@dataclass
class Harness:
    sb: RunningSandbox
    executor: CallExecutor
    tokens: WorldTokens
    observer: Recorder
    pacer: Unpaced
    acme: SiteConfig
    globex: SiteConfig
    results: list[Any] = field(default_factory=list)

    async def run(self, where: SiteConfig, request: JiraRequest, **kw: Any) -> Any:
        """Execute as the site's first active user; keep the result in ``results`` too."""
        user = ACME_USER if where.cloud_id == CLOUD_A else GLOBEX_USER
        result = await self.executor.execute(where, user, request, **kw)
        self.results.append(result)
        return result


@asynccontextmanager
async def harness(
    sb: RunningSandbox,
    *,
    policy: RetryPolicy = FAST,
    timeout_s: float = 5.0,
    bad_tokens: int = 0,
    acme_base: str | None = None,
) -> AsyncIterator[Harness]:
    """An executor against ``sb`` (acme optionally reached through ``acme_base``)."""
    observer = Recorder()
    pacer = Unpaced(observer=observer)
    tokens = WorldTokens(sb.world, bad_first=bad_tokens)
    async with aiohttp.ClientSession() as session:
        executor = CallExecutor(JiraClient(session, timeout_s=timeout_s), {"dev": tokens}, pacer,
                                policy, observer, rng=random.Random(7))
        yield Harness(
            sb, executor, tokens, observer, pacer,
            site("acme", CLOUD_A, acme_base or sb.jira_base(CLOUD_A)),
            site("globex", CLOUD_B, sb.jira_base(CLOUD_B)),
        )


def arrivals(
    world: World, cloud_id: str, *, route: str | None = None,
    where: Callable[[JiraArrival], bool] = lambda a: True,
) -> list[JiraArrival]:
    """The sandbox's own record of which Jira requests arrived, filtered."""
    assert world.jira_arrivals is not None, "set world.jira_arrivals = [] first"
    return [a for a in world.jira_arrivals
            if a.cloud_id == cloud_id and (route is None or a.route == route) and where(a)]


@asynccontextmanager
async def rewriting_proxy(target: str, reason: str,
                          retry_after: str | None = None) -> AsyncIterator[str]:
    """A loopback HTTP proxy to ``target`` that rewrites the ``RateLimit-Reason`` of every 429
    (and its ``Retry-After``, when given), to present what the sandbox itself never sends."""
    skip = {"content-length", "transfer-encoding", "content-encoding", "connection", "date",
            "server"}
    async with aiohttp.ClientSession() as session:

        async def forward(request: web.Request) -> web.Response:
            body = await request.read()
            sent = {k: v for k, v in request.headers.items()
                    if k.lower() in ("authorization", "content-type", "accept")}
            async with session.request(request.method, target + request.path_qs,
                                       data=body or None, headers=sent) as answer:
                data = await answer.read()
                headers = {k: v for k, v in answer.headers.items() if k.lower() not in skip}
                if answer.status == 429 and "RateLimit-Reason" in headers:
                    headers["RateLimit-Reason"] = reason
                if answer.status == 429 and retry_after is not None:
                    headers["Retry-After"] = retry_after
                return web.Response(status=answer.status, body=data, headers=headers)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", forward)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            port = runner.addresses[0][1]
            yield f"http://127.0.0.1:{port}"
        finally:
            await runner.cleanup()
