"""The sandbox as one aiohttp application, and ``serve()`` to run it on a loopback port.

``build_app`` wires the shared World to the gateway, the Jira half and the inspection routes;
``serve`` runs that app and yields a ``RunningSandbox`` that knows its own URLs, which is what
tests, the CLI and the embedded mode of ``forge-runner run`` use.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from runner.sandbox import admin, forge, gateway, jira
from runner.sandbox.config import SandboxConfig
from runner.sandbox.world import Clock, World


def build_app(config: SandboxConfig, *, clock: Clock = time.time) -> tuple[web.Application, World]:
    """The sandbox's application and the World its halves share. ``clock`` drives all its time."""
    world = World(config, clock=clock)
    app = web.Application()
    gateway.install(app, world)
    jira.install(app, world)
    admin.install(app, world)
    if config.forge.enabled:
        forge.install(app, world)
    return app, world


@dataclass(frozen=True)
class RunningSandbox:
    """A sandbox being served: where it is and what it has seen."""

    url: str
    world: World
    config: SandboxConfig

    @property
    def gateway_url(self) -> str:
        return self.url + "/graphql"

    def jira_base(self, cloud_id: str) -> str:
        """The API base URL of a site, as ``app.apiBaseUrl`` would give it."""
        return f"{self.url}/ex/jira/{cloud_id}"

    def report(self) -> dict[str, Any]:
        return self.world.report()


@asynccontextmanager
async def serve(
    config: SandboxConfig,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    clock: Clock = time.time,
) -> AsyncIterator[RunningSandbox]:
    """Serve the sandbox on ``host``; ``port`` None means ``config.port``, 0 a free port."""
    app, world = build_app(config, clock=clock)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, config.port if port is None else port)
        await site.start()
        # With port 0 the OS chose the port; read it back from the listening socket.
        bound_host, bound_port = runner.addresses[0][:2]
        url = f"http://{_url_host(bound_host)}:{bound_port}"
        if "forge" in world.parts:
            await world.parts["forge"].serving(url)
        yield RunningSandbox(url=url, world=world, config=config)
    finally:
        await runner.cleanup()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
