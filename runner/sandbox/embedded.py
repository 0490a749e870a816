"""The sandbox served inside a command (``[sandbox] embedded = true``): ``run`` and ``doctor``.

Its configured port may be taken, most often by the standalone ``forge-runner sandbox`` of the
README on the same port. Then the embedded one listens on a free port instead, says so in one
line, and the command's config is pointed at it: every gateway and Jira URL that named the
configured address names the one served. Nothing else changes (the config's fingerprint is the
file's, so a resumed run does not see a changed config).
"""

from __future__ import annotations

import errno
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace

from runner.config.configfile import Config
from runner.errors import ConfigError
from runner.sandbox.app import RunningSandbox, serve
from runner.sandbox.config import SandboxConfig


@dataclass(frozen=True)
class Embedded:
    """The sandbox served, the config pointed at it, and the line about a taken port (or "")."""

    sandbox: RunningSandbox
    config: Config
    moved: str


@asynccontextmanager
async def serve_embedded(sandbox: SandboxConfig, config: Config) -> AsyncIterator[Embedded]:
    """Serve ``sandbox`` on its port, else on a free one, for as long as the block lasts."""
    configured = f"http://{_url_host(sandbox.host)}:{sandbox.port}"
    moved = ""
    async with AsyncExitStack() as stack:
        try:
            running = await stack.enter_async_context(serve(sandbox))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or sandbox.port == 0:
                raise _unservable(sandbox, exc) from None
            try:
                running = await stack.enter_async_context(serve(sandbox, port=0))
            except OSError as again:
                raise _unservable(sandbox, again) from None
            moved = (f"sandbox: {configured} is taken (another sandbox?); serving this one on "
                     f"{running.url} instead, and this command uses it")
        yield Embedded(running, retarget(config, configured, running.url), moved)


def retarget(config: Config, old: str, new: str) -> Config:
    """``config`` with every gateway and Jira URL under ``old`` moved under ``new``."""
    if old == new:
        return config

    def moved(url: str) -> str:
        return new + url[len(old):] if url == old or url.startswith(old + "/") else url

    environments = {name: replace(env, gateway_url=moved(env.gateway_url))
                    for name, env in config.environments.items()}
    sites = {name: replace(site, api_base_url=moved(site.api_base_url))
             for name, site in config.sites.items()}
    return replace(config, environments=environments, sites=sites)


def _unservable(sandbox: SandboxConfig, exc: OSError) -> ConfigError:
    why = "already in use" if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc)
    return ConfigError("sandbox.port", "a port free to listen on (or 0 for any)",
                       f"{sandbox.host}:{sandbox.port} ({why})")


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
