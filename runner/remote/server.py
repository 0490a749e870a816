"""The remote endpoint Forge invokes: verify, keep the token, answer at once, work afterwards.

Each configured route (``[[serve.routes]]``) handles a POST the same way:

1. the Forge Invocation Token is verified before anything else is read; any failure is a 401
   and changes nothing (no token kept, no installation seen, no job started);
2. the installation it names is recorded (a new one becomes a site) and the
   ``x-forge-oauth-system`` token it carries is kept if it lives longer than the one held;
3. a ``job`` route decides whether this delivery starts a run (see ``triggers``);
4. the answer is written and flushed, and only then is an accepted job started, so Forge
   (which waits 5 s, then redelivers) always hears back before the job's first mint leaves.

On a PostgreSQL journal, serve runs as one of several replicas behind a load balancer: steps 2
and 3 are decided in the database (``servedb``): the installation is recorded there, the token
is also kept there sealed (``runner.minting.sealed``), and one conditional insert accepts a
trigger for every replica; the replica whose insert won starts the run (``start_accepted``),
reading its tokens from the database as a run on any host would. ``/healthz`` and ``/readyz``
are for the load balancer (``health``).

A second listener, on 127.0.0.1 only, hands the freshest tokens to jobs on this host
(``loopback``). ``serve_remote`` runs both, and on exit stops listening, drains the runs in
flight and waits for them.
"""

from __future__ import annotations

import asyncio
import errno
import json
import secrets as secrets_module
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import aiohttp
import psycopg
import structlog
from aiohttp import web
from psycopg_pool import PoolTimeout

from runner.aio import to_the_end
from runner.budgets import Clock, SystemClock
from runner.budgets.store import location_of, open_store
from runner.cluster.settings import cluster_settings
from runner.config.configfile import Config, SiteConfig
from runner.errors import ConfigError, InvocationTokenError
from runner.events import FanOut, Observer
from runner.journal.open import journal_target, open_journal
from runner.journal.postgres import PostgresJournal
from runner.minting.sealed import SealKey
from runner.monitor import InstallationView, Monitor, add_monitor_routes
from runner.monitor.journaltime import timed_journal
from runner.monitor.lanes import LanesReader
from runner.remote.fit import FitVerifier, JwksCache
from runner.remote.health import add_health_routes
from runner.remote.installation_tokens import Installation, TokenStore
from runner.remote.loopback import build_token_app
from runner.remote.nightly import JobTemplate, site_for
from runner.remote.servedb import HEARTBEAT_S, AcceptedTrigger, ServeDatabase
from runner.remote.settings import ServeConfig, ServeRoute, require_serve_config
from runner.remote.triggers import Decision, TriggerDesk

log = structlog.get_logger("runner.remote.server")

SYSTEM_TOKEN_HEADER = "x-forge-oauth-system"
# A replica's database work for one delivery, bounded well inside Forge's 5 s answer window.
DATABASE_ANSWER_S = 3.0
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class RunningRemote:
    """A serve process's endpoint, as tests and the command see it."""

    url: str
    token_url: str
    store: TokenStore
    desk: TriggerDesk
    jwks: JwksCache
    monitor: Monitor
    # The replicas' shared tables, on a PostgreSQL journal; None on SQLite.
    servedb: ServeDatabase | None = None

    def stop(self) -> None:
        """Drain the runs in flight (a second call stops them at once)."""
        self.desk.stop()


class RemoteEndpoint:
    """The handlers of the configured routes."""

    def __init__(self, config: Config, serve: ServeConfig, verifier: FitVerifier,
                 store: TokenStore, desk: TriggerDesk, runs: Background,
                 clock: Clock, monitor: Monitor, operator_token: str | None,
                 jwks: JwksCache, servedb: ServeDatabase | None) -> None:
        self._config = config
        self._serve = serve
        self._verifier = verifier
        self._store = store
        self._desk = desk
        self._runs = runs
        self._clock = clock
        self._monitor = monitor
        self._operator_token = operator_token
        self._jwks = jwks
        self._db = servedb

    def app(self) -> web.Application:
        app = web.Application()
        for route in self._serve.routes:
            app.router.add_post(route.path, self._handler(route))
        add_monitor_routes(app, self._monitor, self._operator_token)
        add_health_routes(app, self._jwks, self._db.ping if self._db is not None else None)
        return app

    def _handler(self, route: ServeRoute) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            return await self.handle(route, request)

        return handle

    async def handle(self, route: ServeRoute, request: web.Request) -> web.StreamResponse:
        try:
            invocation = await self._verifier.verify(request.headers.get("Authorization"))
        except InvocationTokenError as exc:
            log.warning("runner.remote.invocation.refused", route=route.path, reason=exc.reason)
            return web.json_response({"error": "invalid invocation token"}, status=401)
        body = await _json_body(request)
        inst = Installation(
            installation_id=invocation.installation_id,
            cloud_id=invocation.cloud_id,
            api_base_url=invocation.api_base_url,
            environment_type=invocation.environment_type,
            environment_id=invocation.environment_id,
            first_seen=self._clock.now(),
        )
        self._store.see(inst)
        token = request.headers.get(SYSTEM_TOKEN_HEADER, "")
        kept = self._store.offer(inst.installation_id, token)
        site = site_for(self._config, self._serve, inst)
        answer: dict[str, object] = {"ok": True, "site": site.name, "token_kept": kept}
        start: Callable[[], None] | None = None
        if self._db is not None:
            try:
                async with asyncio.timeout(DATABASE_ANSWER_S):
                    trigger = await self._shared(route, inst, site, token, answer)
            except (psycopg.Error, PoolTimeout, TimeoutError) as exc:
                # Not a 2xx: Forge delivers again, and a replica that reaches the database
                # decides then.
                log.warning("runner.remote.database.unreachable", route=route.path,
                            installation=inst.installation_id, error=type(exc).__name__)
                return web.json_response({"error": "database unreachable"}, status=503)
            if trigger is not None:
                start = partial(self._runs.start_soon, self._desk.start_accepted, trigger)
        elif route.kind == "job":
            decision = self._desk.accept(route, site)
            answer["run"] = str(decision)
            if decision is Decision.ACCEPTED:
                start = partial(self._runs.start_soon, self._desk.run, route, site)
        if route.kind != "job":
            _log_route(route, site, inst, kept, body)
        response = web.json_response(answer)
        try:
            # Flushed before the job starts: Forge hears back before the first mint is sent.
            await response.prepare(request)
            await response.write_eof()
        finally:
            # Started even when the answer could not be written (Forge hung up): the trigger
            # is accepted, and a redelivery of it would be a duplicate.
            if start is not None:
                start()
        return response

    async def _shared(self, route: ServeRoute, inst: Installation, site: SiteConfig,
                      token: str, answer: dict[str, object]) -> AcceptedTrigger | None:
        """A replica's part before the answer: the installation and its token written to the
        database, and a job trigger accepted there or not (said in ``answer``)."""
        assert self._db is not None
        await self._db.see(inst, token, leeway_s=self._serve.leeway_s)
        if route.kind != "job":
            return None
        decision, trigger = await self._desk.accept_shared(route, site)
        answer["run"] = str(decision)
        return trigger


def _log_route(route: ServeRoute, site: SiteConfig, inst: Installation, kept: bool,
               body: object) -> None:
    if route.kind == "lifecycle":
        event = body.get("eventType") if isinstance(body, dict) else None
        log.info("runner.remote.lifecycle", event_type=str(event), site=site.name,
                 installation=inst.installation_id)
    else:
        log.info("runner.remote.refresh", site=site.name, token_kept=kept)


async def _json_body(request: web.Request) -> object:
    try:
        raw = await request.read()
        return json.loads(raw) if raw else None
    except (ValueError, RecursionError, aiohttp.ClientError):
        # RecursionError: a body nested past the parser's depth is no body we read.
        return None


@asynccontextmanager
async def serve_remote(
    config: Config,
    *,
    clock: Clock | None = None,
    host: str | None = None,
    port: int | None = None,
    token_port: int | None = None,
    observer: Observer | None = None,
) -> AsyncIterator[RunningRemote]:
    """Serve ``config``'s ``[serve]`` endpoint until the block ends, then drain and stop.

    ``host``/``port``/``token_port`` override the config (0 picks a free port); ``clock``
    drives FIT times, dedup windows and the jobs' budgets (tests compress it)."""
    serve = require_serve_config(config)
    clock = clock or SystemClock()
    templates = {r.path: JobTemplate.load(r.job, config)
                 for r in serve.routes if r.kind == "job" and r.job is not None}
    secret = _secret(config, serve)
    operator_token = serve.operator_token.read() if serve.operator_token else None
    store = TokenStore(clock.now, leeway_s=serve.leeway_s)
    token_url = ""
    target = journal_target(config.runner)
    key = _seal_key(config, serve) if isinstance(target, str) else None
    async with AsyncExitStack() as stack:
        servedb = None
        if isinstance(target, str) and key is not None:
            servedb = await ServeDatabase.open(target, key)
            stack.push_async_callback(servedb.close)
        journal = await stack.enter_async_context(
            open_journal(target, clock=clock.now,
                         wait_s=config.retry_jira.deadline_s)
        )
        budget_store = await stack.enter_async_context(open_store(
            location_of(config.runner), wait_s=config.retry_jira.deadline_s))
        session = await stack.enter_async_context(aiohttp.ClientSession())
        jwks = JwksCache(serve.jwks_url, session, clock=clock.now,
                         refetch_min_s=serve.jwks_refetch_min_s,
                         refetch_max_s=serve.jwks_refetch_max_s,
                         max_age_s=serve.jwks_max_age_s)
        app_id = config.environments[serve.environment].app_id
        verifier = FitVerifier(jwks, app_id, clock=clock.now, leeway_s=serve.leeway_s)
        monitor = Monitor(config, clock=clock, process="serve",
                          pacers=lambda: {run: e.pacer for run, e in desk.engines.items()},
                          installations=lambda: installation_views(store, serve.environment))
        if isinstance(journal, PostgresJournal):  # replicas: the workers they share runs with
            monitor.lanes = LanesReader(journal, cluster_settings(config).lease_s)
        desk = TriggerDesk(config, serve, journal, templates, clock=clock,
                           token_url=lambda: token_url, secret=secret,
                           observer=FanOut(monitor, observer) if observer else monitor,
                           engine_journal=timed_journal(journal,
                                                        monitor.metrics.journal_latency),
                           budget_store=budget_store, servedb=servedb)
        token_runner = web.AppRunner(build_token_app(store, secret), access_log=None)
        await token_runner.setup()
        stack.push_async_callback(token_runner.cleanup)
        tport = serve.token_endpoint.port if token_port is None else token_port
        # Loopback only, whatever the config says: the token never leaves this host.
        where = "serve.token_endpoint.port" if token_port is None else "--token-port"
        await _listen(web.TCPSite(token_runner, "127.0.0.1", tport), where, config)
        token_url = _url(token_runner)
        runs = Background()
        endpoint = RemoteEndpoint(config, serve, verifier, store, desk, runs, clock, monitor,
                                  operator_token, jwks, servedb)
        if servedb is not None:
            beat = asyncio.get_running_loop().create_task(_heartbeat(servedb))
            stack.callback(beat.cancel)
        runner = web.AppRunner(endpoint.app(), access_log=None)
        await runner.setup()
        try:
            await _listen(web.TCPSite(runner, host or serve.host,
                                      serve.port if port is None else port),
                          "serve.port" if port is None else "--port", config)
            url = _url(runner)
            log.info("runner.remote.serving", url=url, token_url=token_url,
                     routes=[f"{r.kind} {r.path}" for r in serve.routes])
            yield RunningRemote(url, token_url, store, desk, jwks, monitor, servedb)
        finally:
            # Stop listening first, then let the runs drain and wait for them.
            await runner.cleanup()
            desk.stop()
            await runs.wait()


def installation_views(store: TokenStore, environment: str) -> list[InstallationView]:
    """The installations ``store`` knows, with their newest system token's times."""
    views = []
    for inst in store.installations():
        held = store.token(inst.installation_id)
        views.append(InstallationView(
            inst.installation_id, inst.cloud_id, environment,
            held.received_at if held else None, held.expires_at if held else None))
    return views


class Background:
    """The runs started by triggers: tasks that outlive the request that started them.

    Plain tasks rather than a task group: ``serve_remote`` may be entered in one task and left
    in another (a test fixture does), which a task group does not allow."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def start_soon(self, func: Callable[..., Coroutine[Any, Any, object]], *args: Any) -> None:
        task = asyncio.get_running_loop().create_task(_discard(func(*args)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait(self) -> None:
        """Until every run has ended; if cancelled meanwhile, the runs are cancelled too and
        waited for (shielded), so none outlives the journal it writes to."""
        try:
            while self._tasks:
                await asyncio.wait(set(self._tasks))
        finally:
            if self._tasks:
                for task in self._tasks:
                    task.cancel()
                await to_the_end(asyncio.wait(set(self._tasks)))


async def _discard(work: Coroutine[Any, Any, object]) -> None:
    await work


async def _heartbeat(servedb: ServeDatabase) -> None:
    """Renew this replica's runs' rows, so no other replica takes them for dead runs."""
    while True:
        await asyncio.sleep(HEARTBEAT_S)
        try:
            await servedb.heartbeat()
        except Exception as exc:  # the database away for a while: the next beat tries again
            log.warning("runner.remote.heartbeat.failed", error=type(exc).__name__)


def _seal_key(config: Config, serve: ServeConfig) -> SealKey:
    """The key sealing system tokens in a PostgreSQL journal: required there ([serve.seal])."""
    if serve.seal_key is None:
        raise ConfigError("serve.seal", "secret_env or secret_file naming the key that seals "
                          "system tokens in the PostgreSQL journal (the same on every replica)",
                          "none", file=config.path)
    return SealKey.load(serve.seal_key)


def _secret(config: Config, serve: ServeConfig) -> str:
    ref = serve.token_endpoint.secret
    if ref is None:
        # Only this process's own jobs use the route: a secret made up now, kept in memory.
        return secrets_module.token_urlsafe(32)
    value = ref.read()
    if len(value) < 16:
        raise ConfigError("serve.token_endpoint", f"a secret of 16 or more characters in "
                          f"{ref.describe()}", "none" if not value else "a shorter one",
                          file=config.path)
    return value


async def _listen(site: web.TCPSite, key: str, config: Config) -> None:
    """Start listening; a port in use (or an address that can't be had) is a ConfigError
    naming ``key``, before any route is served."""
    try:
        await site.start()
    except OSError as exc:
        why = "already in use" if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc)
        raise ConfigError(key, "a port free to listen on (or 0 for any)",
                          f"{site.name.removeprefix('http://')} ({why})",
                          file=None if key.startswith("--") else config.path) from None


def _url(runner: web.AppRunner) -> str:
    host, port = runner.addresses[0][:2]
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}"
