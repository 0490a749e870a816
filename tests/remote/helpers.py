"""What the serve tests share: a sandbox that plays Forge, a serve config for it, a fast clock."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

from runner.sandbox.app import RunningSandbox
from runner.sandbox.arrivals import JiraArrival
from runner.sandbox.config import (
    Faults,
    ForgeSettings,
    ForgeTrigger,
    SandboxConfig,
    SandboxIssue,
    SandboxSite,
)
from runner.sandbox.forge import JWKS_PATH, ForgePlatform
from runner.sandbox.testing import ACTIVE_PATTERN, make_sandbox_config

APP_ID = "ari:cloud:ecosystem::app/8db5c0f5-3a48-4d2b-9c4b-4d2f0a7e6a11"
CLOUD_C = "1b2c3d4e-5f60-4a7b-8c9d-0e1f2a3b4c5d"  # site "initech"


def after_jira_arrivals(sb: RunningSandbox, n: int) -> asyncio.Event:
    """Starts the sandbox's Jira arrival log; the event is set once it holds ``n`` calls."""
    sb.world.jira_arrivals = []
    reached = asyncio.Event()
    record = sb.world.record_arrival

    def recorded(arrival: JiraArrival) -> None:
        record(arrival)
        if len(sb.world.jira_arrivals or []) >= n:
            reached.set()

    sb.world.record_arrival = recorded  # type: ignore[method-assign]
    return reached


class ScaledClock:
    """Wall time running ``scale`` times faster than real time, for the sandbox (a callable),
    the serve process and its jobs (``now``/``sleep``) alike: hours pass in seconds."""

    def __init__(self, scale: float, start: float | None = None) -> None:
        self.scale = scale
        self._start = time.time() if start is None else start
        self._real0 = time.monotonic()

    def now(self) -> float:
        return self._start + (time.monotonic() - self._real0) * self.scale

    def __call__(self) -> float:
        return self.now()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.scale)


def forge_sandbox_config(*, triggers: tuple[ForgeTrigger, ...] = (), time_scale: float = 1.0,
                         system_token_ttl_s: int = 14400, fit_ttl_s: float = 25.0,
                         redelivery_delay_s: float = 0.05, faults: Faults | None = None,
                         schedule: bool = False, answer_timeout_s: float = 5.0
                         ) -> SandboxConfig:
    """The test world (acme, globex) plus a third site, initech, with Forge switched on."""
    base = make_sandbox_config()
    initech = SandboxSite(
        name="initech", cloud_id=CLOUD_C, active_account_pattern=ACTIVE_PATTERN,
        issues=(SandboxIssue("INI-1", "INI", "Initech issue 1"),), projects=("INI",),
    )
    envs = {name: replace(env, system_token_ttl_s=system_token_ttl_s)
            for name, env in base.environments.items()}
    forge = ForgeSettings(
        enabled=True, app_id=APP_ID, environment="dev", schedule=schedule, triggers=triggers,
        time_scale=time_scale, fit_ttl_s=fit_ttl_s, redelivery_delay_s=redelivery_delay_s,
        answer_timeout_s=answer_timeout_s,
    )
    return replace(base, sites={**base.sites, "initech": initech}, environments=envs,
                   forge=forge, faults=faults or base.faults)


def forge_of(sb: RunningSandbox) -> ForgePlatform:
    forge = sb.world.parts["forge"]
    assert isinstance(forge, ForgePlatform)
    return forge


ROUTES = """
[[serve.routes]]
path = "/forge/lifecycle"
kind = "lifecycle"

[[serve.routes]]
path = "/forge/refresh"
kind = "refresh"
interval = "hour"
"""


def write_serve_config(folder: Path, sb: RunningSandbox, *, routes: str = ROUTES,
                       mint_limit: int = 1000, mint_window_s: float = 60.0,
                       concurrency: int = 4, serve_extra: str = "", token_extra: str = "",
                       extra: str = "", runner_extra: str = "") -> Path:
    """A runner config for the sandbox ``sb`` with a ``[serve]`` section whose JWKS is the
    sandbox's. No sites: installations become sites as Forge invokes the remote."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.toml"
    path.write_text(f"""[runner]
concurrency = {concurrency}
journal = "journal.db"
{runner_extra}

[environments.dev]
app_id = "{APP_ID}"
gateway_url = "{sb.gateway_url}"
mint_limit = {mint_limit}
mint_window_s = {mint_window_s}

[environments.dev.system_token]
env = "FORGE_RUNNER_TEST_UNUSED_TOKEN"

[serve]
port = 0
environment = "dev"
jwks_url = "{sb.url}{JWKS_PATH}"
{serve_extra}

[serve.token_endpoint]
port = 0
{token_extra}
{routes}
{extra}
""")
    return path
