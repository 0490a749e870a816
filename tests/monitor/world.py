"""What the monitor tests share: serve with a nightly sync and a migration, against a sandbox
that plays Forge, limits mints and per-issue writes (so 429s and pauses happen) and slows Jira
a little (so a browser sees the run move).

The migration runs on acme: most rows comment on an existing issue, one names an issue that
does not exist (failed: http 404, row LEG-404) and one a deactivated user (skipped). The
nightly sync sets a user property for a few users. Both belong to environment dev, so they
share its mint bucket and serve runs them one after another.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import aiohttp

from runner.config.configfile import load_config
from runner.events import Observer
from runner.remote.server import RunningRemote, serve_remote
from runner.sandbox.app import RunningSandbox
from runner.sandbox.config import (
    Faults,
    ForgeTrigger,
    JiraLimits,
    MintLimit,
    SandboxConfig,
    SandboxSite,
)
from runner.sandbox.forge import ForgePlatform
from runner.sandbox.testing import ACME_DEACTIVATED, ACTIVE_PATTERN, StartSandbox, pattern_account
from tests.remote.helpers import ROUTES, forge_of, forge_sandbox_config, write_serve_config

NIGHTLY = ForgeTrigger(key="nightly-sync", path="/forge/nightly-sync", interval="day")
MIGRATE = ForgeTrigger(key="migrate", path="/forge/migrate", interval="day")
FAILED_ROW = "LEG-404"
SKIPPED_ROW = "LEG-GONE"


@dataclass
class Served:
    sandbox: RunningSandbox
    remote: RunningRemote
    forge: ForgePlatform

    @property
    def status_url(self) -> str:
        return f"{self.remote.url}/status"

    async def get(self, path: str) -> str:
        async with aiohttp.ClientSession() as session, \
                session.get(f"{self.remote.url}{path}") as answer:
            assert answer.status == 200, (path, answer.status)
            return await answer.text()

    async def status(self) -> dict[str, object]:
        data = json.loads(await self.get("/status.json"))
        assert isinstance(data, dict)
        return data


def migration_rows(count: int, failed_row: str = FAILED_ROW) -> list[dict[str, str]]:
    rows = [{"legacy_id": f"LEG-{n:03d}", "account_id": pattern_account(n % 6 + 1),
             "issue": f"MIG-{n % 5 + 1}"} for n in range(count)]
    rows.insert(count // 3, {"legacy_id": failed_row, "account_id": pattern_account(1),
                             "issue": "MIG-99"})
    rows.insert(count // 2, {"legacy_id": SKIPPED_ROW, "account_id": ACME_DEACTIVATED,
                             "issue": "MIG-1"})
    return rows


def write_templates(folder: Path, rows: int, users: int, failed_row: str = FAILED_ROW
                    ) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "users.jsonl").write_text("".join(
        json.dumps({"account_id": pattern_account(n), "team": f"t{n}"}) + "\n"
        for n in range(1, users + 1)))
    nightly = folder / "nightly-sync.toml"
    nightly.write_text("""name = "nightly-sync"
site = "any"
[source]
jsonl = "users.jsonl"
[[actions]]
type = "user.property.set"
key = "nightly-sync"
value = { team = "{team}" }
""")
    (folder / "migration.jsonl").write_text("".join(
        json.dumps(r) + "\n" for r in migration_rows(rows, failed_row)))
    migrate = folder / "migration.toml"
    migrate.write_text("""name = "migration"
site = "any"
row_key = "legacy_id"
[source]
jsonl = "migration.jsonl"
[[actions]]
type = "comment.add"
issue = "{issue}"
body = "Migrated {legacy_id}"
""")
    return nightly, migrate


@asynccontextmanager
async def served(tmp_path: Path, start_sandbox: StartSandbox, *, rows: int = 40,
                 users: int = 4, latency_ms: float = 20.0, mints_per_window: int = 3,
                 mint_window_s: float = 2.0, per_issue_2s: int = 3,
                 concurrency: int = 2, observer: Observer | None = None,
                 extra_sites: int = 0, failed_row: str = FAILED_ROW,
                 host: str | None = None, serve_extra: str = "") -> AsyncIterator[Served]:
    """Serve (real HTTP, in-process) for a sandbox playing Forge, with acme installed."""
    nightly, migrate = write_templates(tmp_path / "jobs", rows, users, failed_row)
    sandbox = forge_sandbox_config(
        triggers=(NIGHTLY, MIGRATE),
        faults=Faults(latency_ms_min=latency_ms, latency_ms_max=latency_ms),
    )
    sandbox = replace(
        sandbox,
        # The gateway lets few mints through: the runner's own budget (1000 a minute) is
        # wrong for it, so it meets 429s with Retry-After and pauses the bucket.
        mint_limit=MintLimit(limit=mints_per_window, window_s=mint_window_s),
        # Jira allows fewer writes per issue than the runner's default pacing: per-issue 429s.
        jira_limits=JiraLimits(per_issue_2s=per_issue_2s),
    )
    if extra_sites:
        sandbox = with_sites(sandbox, extra_sites)
    routes = ROUTES + "".join(f"""
[[serve.routes]]
path = "{trigger.path}"
kind = "job"
job = "{job}"
interval = "day"
""" for trigger, job in ((NIGHTLY, nightly), (MIGRATE, migrate)))
    async with start_sandbox(sandbox) as sb:
        config = load_config(write_serve_config(tmp_path, sb, routes=routes,
                                                concurrency=concurrency,
                                                serve_extra=serve_extra))
        forge = forge_of(sb)
        async with serve_remote(config, observer=observer, host=host) as remote:
            forge.remote_url = remote.url
            (installed,) = await forge.install("acme")
            assert installed.status == 200
            yield Served(sb, remote, forge)


def with_sites(sandbox: SandboxConfig, count: int) -> SandboxConfig:
    """``sandbox`` with ``count`` more sites (installable, no issues): serve's page lists them."""
    extra = {}
    for n in range(count):
        name = f"site{n:02d}"
        extra[name] = SandboxSite(name=name, cloud_id=str(uuid.UUID(int=n + 1)),
                                  active_account_pattern=ACTIVE_PATTERN, issues=(),
                                  projects=())
    return replace(sandbox, sites={**sandbox.sites, **extra})
