"""Configuration: a TOML file -> frozen dataclasses, checked at load.

Secrets never live in the file: a system token comes from an environment variable, a file or a
command (``SystemTokenSource``). An error names the file, the key's path and what was expected.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from runner.sandbox.config import SandboxConfig

DEFAULT_GATEWAY_URL = "https://api.atlassian.com/graphql"
DEFAULT_API_BASE_URL = "https://api.atlassian.com/ex/jira/{cloud_id}"
DEFAULT_CONTEXT_ARI = "ari:cloud:jira:{cloud_id}:workspace/{cloud_id}"


@dataclass(frozen=True)
class SystemTokenSource:
    """Where an environment's system token comes from: exactly one of env, file, command."""

    env: str | None = None
    file: Path | None = None
    command: tuple[str, ...] | None = None
    # Work waits this long for a valid system token before the environment is blocked.
    max_wait_s: float = 600.0
    # Relative files and commands run from here (the config file's folder).
    cwd: Path = Path(".")


@dataclass(frozen=True)
class EnvironmentConfig:
    """One app environment = one OAuth client."""

    name: str
    app_id: str
    system_token: SystemTokenSource
    gateway_url: str = DEFAULT_GATEWAY_URL
    mint_bucket: str = ""  # "" means the environment's own name
    mint_limit: int = 1000
    mint_window_s: float = 60.0

    @property
    def bucket(self) -> str:
        return self.mint_bucket or self.name


@dataclass(frozen=True)
class SiteConfig:
    """One Jira installation. ``api_base_url`` and ``context_ari`` have ``{cloud_id}`` filled."""

    name: str
    cloud_id: str
    installation_id: str
    environment: str
    api_base_url: str
    context_ari: str


@dataclass(frozen=True)
class RetryPolicy:
    """One retry vocabulary for minting and Jira calls. 429s never spend ``attempts``."""

    attempts: int = 5
    wait_initial_s: float = 1.0
    wait_max_s: float = 60.0
    wait_jitter_s: float = 1.0
    deadline_s: float = 3600.0


@dataclass(frozen=True)
class JiraBudgets:
    """Jira's limits as the runner paces them (atlassian-facts.md section 3)."""

    quota_points: int = 65000
    quota_window_s: float = 3600.0
    burst_get_post: int = 100
    burst_put_delete: int = 50
    per_issue_2s: int = 20
    per_issue_30s: int = 100


@dataclass(frozen=True)
class GatewayMessages:
    """Regexes that classify a gateway's HTTP-200 failure message. The real texts are
    undocumented (a guess), so they are configuration."""

    context_refused: tuple[str, ...] = (r"Could not load permissions for app user",)
    user_refused: tuple[str, ...] = (
        r"deactivated",
        r"does not have access",
        r"not found",
        r"cannot be impersonated",
        r"anonymous",
    )
    rate_limited: tuple[str, ...] = (r"rate limit", r"too many requests")


@dataclass(frozen=True)
class RunnerSettings:
    concurrency: int = 16
    journal: Path = Path("forge-runner.db")
    # Seconds between a request leaving and giving up on its answer.
    request_timeout_s: float = 30.0
    # A user token is refreshed this long before its expiry.
    token_refresh_margin_s: float = 300.0


@dataclass(frozen=True)
class Config:
    path: Path
    runner: RunnerSettings
    environments: Mapping[str, EnvironmentConfig]
    sites: Mapping[str, SiteConfig]
    retry_mint: RetryPolicy = RetryPolicy()
    retry_jira: RetryPolicy = RetryPolicy(wait_initial_s=2.0, deadline_s=36000.0)
    jira_budgets: JiraBudgets = JiraBudgets()
    gateway_messages: GatewayMessages = GatewayMessages()
    sandbox: SandboxConfig | None = None
    # sha256 of the file's bytes: a resumed run checks it did not change.
    fingerprint: str = field(default="")
