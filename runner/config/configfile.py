"""Configuration: a TOML file -> frozen dataclasses, checked at load (``load_config``).

Secrets never live in the file: a system token comes from an environment variable, a file or a
command (``SystemTokenSource``). An error names the file, the key's path and what was expected.

The ``[sandbox]``, ``[serve]`` and ``[cluster]`` tables are kept as read (``*_table``) and
parsed by their own packages (``runner.sandbox.config``, ``runner.remote.settings``,
``runner.cluster.settings``), so the core imports none of them.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from runner.config.ari import AriError, validate_ari
from runner.config.checks import check_shared_buckets
from runner.config.journalkeys import budgets_key, journal_keys
from runner.config.tables import MISSING, Table, describe
from runner.config.tokensource import SystemTokenSource as SystemTokenSource
from runner.config.tokensource import token_source
from runner.errors import ConfigError

DEFAULT_GATEWAY_URL = "https://api.atlassian.com/graphql"
DEFAULT_API_BASE_URL = "https://api.atlassian.com/ex/jira/{cloud_id}"
DEFAULT_CONTEXT_ARI = "ari:cloud:jira:{cloud_id}:workspace/{cloud_id}"


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
    # This many users in a row whose mint fails the same way for good (after the mint policy's
    # attempts) mean the gateway, not the users, is at fault: the environment is blocked.
    block_after_failed_mints: int = 3

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


# More kept for serve would leave a migration less than half its quota: a mistake, not a plan.
MAX_SERVE_RESERVE = 0.5


@dataclass(frozen=True)
class JiraBudgets:
    """Jira's limits as the runner paces them (atlassian-facts.md section 3)."""

    quota_points: int = 65000
    quota_window_s: float = 3600.0
    burst_get_post: int = 100
    burst_put_delete: int = 50
    per_issue_2s: int = 20
    per_issue_30s: int = 100
    # The share of every points quota that runs other than serve's leave unspent, for serve's
    # nightly runs (0: none kept). Every process on one journal must use the same.
    serve_reserve: float = 0.0


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
    # The SQLite journal's file; unused when ``journal_url`` is set.
    journal: Path = Path("forge-runner.db")
    # A PostgreSQL journal: ``journal = "postgresql://..."``, or the URL read from the variable
    # ``journal_url_env`` names. Never shown: it may hold a password.
    journal_url: str | None = field(default=None, repr=False)
    journal_url_env: str | None = None
    budgets: Path | str | None = None  # the shared budgets' database: a path or a URL
    # Seconds between a request leaving and giving up on its answer.
    request_timeout_s: float = 30.0
    # A user token is refreshed this long before its expiry.
    token_refresh_margin_s: float = 300.0
    # Search (``search/jql``) lags behind writes: a create it does not find within this many
    # seconds of the item's start may still exist, so it is looked for again, not sent again.
    search_settle_s: float = 30.0


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
    # [sandbox], [serve], [cluster] as read, for their packages to parse; None when absent.
    sandbox_table: Mapping[str, Any] | None = None
    serve_table: Mapping[str, Any] | None = None
    cluster_table: Mapping[str, Any] | None = None
    # sha256 of the file's bytes: a resumed run checks it did not change.
    fingerprint: str = field(default="")


# -- loading -----------------------------------------------------------------------------------


def load_config(path: str | Path) -> Config:
    """Read and check a config file. ConfigError names the file, the key's path and what was
    expected; unknown keys are errors; relative paths resolve against the file's folder."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        found = exc.strerror or str(exc)
        if isinstance(exc, FileNotFoundError):
            found += ("; name the config with --config FILE, or copy config.example.toml to "
                      f"{path} and fill it in")
        raise ConfigError("(file)", "a readable config file", found, file=path) from None
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError("(file)", "valid TOML", str(exc), file=path) from None

    def error(key: str, expected: str, found: str) -> ConfigError:
        return ConfigError(key, expected, found, file=path)

    base = path.resolve().parent
    root = Table(doc, "", error)
    runner = _runner(root.table("runner"), base)
    environments = {
        name: _environment(name, t, base, runner.journal_url)
        for name, t in root.tables("environments")
    }
    sites = {name: _site(name, t, environments) for name, t in root.tables("sites")}
    retry = root.table("retry")
    retry_mint = _retry(retry.table("mint"), Config.retry_mint)
    retry_jira = _retry(retry.table("jira"), Config.retry_jira)
    retry.done()
    budgets = _budgets(root.table("jira_budgets"))
    messages = _messages(root.table("gateway_messages"))
    check_shared_buckets(environments, error)
    sandbox, serve, cluster = (MappingProxyType(root.table(name).data) if name in root else None
                               for name in ("sandbox", "serve", "cluster"))
    root.done()
    return Config(
        path=path,
        runner=runner,
        environments=environments,
        sites=sites,
        retry_mint=retry_mint,
        retry_jira=retry_jira,
        jira_budgets=budgets,
        gateway_messages=messages,
        sandbox_table=sandbox,
        serve_table=serve,
        cluster_table=cluster,
        fingerprint=hashlib.sha256(data).hexdigest(),
    )


def _resolve(base: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p


def _url(t: Table, name: str, default: str, cloud_id: str | None = None) -> str:
    value: str = t.nonempty(name, default)
    filled = value.replace("{cloud_id}", cloud_id) if cloud_id is not None else value
    allowed = " with at most the {cloud_id} placeholder" if cloud_id is not None else ""
    if not re.fullmatch(r"https?://[^\s{}]+", filled):
        raise t.error(name, f"an http:// or https:// URL{allowed}", describe(value))
    return filled.rstrip("/")


def _runner(t: Table, base: Path) -> RunnerSettings:
    d = RunnerSettings()
    journal, url, url_env = journal_keys(t, str(d.journal))
    settings = RunnerSettings(
        concurrency=t.integer("concurrency", d.concurrency, minimum=1),
        journal=d.journal if journal is None else _resolve(base, journal),
        journal_url=url,
        journal_url_env=url_env,
        request_timeout_s=t.number("request_timeout_s", d.request_timeout_s, positive=True),
        token_refresh_margin_s=t.number(
            "token_refresh_margin_s", d.token_refresh_margin_s, minimum=0
        ),
        search_settle_s=t.number("search_settle_s", d.search_settle_s, minimum=0),
        budgets=budgets_key(t, base),
    )
    t.done()
    return settings


def _ari(t: Table, name: str, product: str, type: str | None) -> str:
    value: str = t.string(name)
    try:
        validate_ari(value, product=product, type=type)
    except AriError as exc:
        raise t.error(name, f"an ARI of the form {exc.expected}", describe(value)) from None
    return value


def _environment(name: str, t: Table, base: Path, journal_url: str | None) -> EnvironmentConfig:

    d = EnvironmentConfig
    env = EnvironmentConfig(
        name=name,
        app_id=_ari(t, "app_id", "ecosystem", "app"),
        system_token=token_source(t.table("system_token", required=True), base, journal_url),
        gateway_url=_url(t, "gateway_url", d.gateway_url),
        mint_bucket=t.string("mint_bucket", d.mint_bucket),
        mint_limit=t.integer("mint_limit", d.mint_limit, minimum=1),
        mint_window_s=t.number("mint_window_s", d.mint_window_s, positive=True),
        block_after_failed_mints=t.integer("block_after_failed_mints",
                                           d.block_after_failed_mints, minimum=1),
    )
    t.done()
    return env


def _site(name: str, t: Table, environments: Mapping[str, EnvironmentConfig]) -> SiteConfig:
    cloud_id: str = t.string("cloud_id", expected="the site's cloud ID")
    # A site's name (`acme-prod`) in its place would be sent to the gateway and end the run
    # blocked; a cloud ID is always a UUID (https://SITE.atlassian.net/_edge/tenant_info).
    if not re.fullmatch(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}", cloud_id):
        raise t.error("cloud_id", "the site's cloud ID, a UUID (from "
                      "https://SITE.atlassian.net/_edge/tenant_info)", describe(cloud_id))
    only = next(iter(environments)) if len(environments) == 1 else MISSING
    environment: str = t.nonempty("environment", only, expected="an environment's name")
    if environment not in environments:
        known = ", ".join(sorted(environments)) or "none are configured"
        raise t.error("environment", f"a configured environment ({known})", repr(environment))
    template: str = t.nonempty("context_ari", DEFAULT_CONTEXT_ARI)
    context_ari = template.replace("{cloud_id}", cloud_id)
    try:
        validate_ari(context_ari)
    except AriError as exc:
        raise t.error(
            "context_ari", f"an ARI of the form {exc.expected} ({{cloud_id}} is filled in)",
            describe(template),
        ) from None
    site = SiteConfig(
        name=name,
        cloud_id=cloud_id,
        installation_id=_ari(t, "installation_id", "ecosystem", "installation"),
        environment=environment,
        api_base_url=_url(t, "api_base_url", DEFAULT_API_BASE_URL, cloud_id),
        context_ari=context_ari,
    )
    t.done()
    return site


def _retry(t: Table, d: RetryPolicy) -> RetryPolicy:
    policy = RetryPolicy(
        attempts=t.integer("attempts", d.attempts, minimum=1),
        wait_initial_s=t.number("wait_initial_s", d.wait_initial_s, minimum=0),
        wait_max_s=t.number("wait_max_s", d.wait_max_s, minimum=0),
        wait_jitter_s=t.number("wait_jitter_s", d.wait_jitter_s, minimum=0),
        deadline_s=t.number("deadline_s", d.deadline_s, positive=True),
    )
    if policy.wait_max_s < policy.wait_initial_s:
        raise t.error(
            "wait_max_s", f"a number >= wait_initial_s ({policy.wait_initial_s})",
            describe(policy.wait_max_s),
        )
    t.done()
    return policy


def _budgets(t: Table) -> JiraBudgets:
    d = JiraBudgets()
    budgets = JiraBudgets(
        quota_points=t.integer("quota_points", d.quota_points, minimum=1),
        quota_window_s=t.number("quota_window_s", d.quota_window_s, positive=True),
        burst_get_post=t.integer("burst_get_post", d.burst_get_post, minimum=1),
        burst_put_delete=t.integer("burst_put_delete", d.burst_put_delete, minimum=1),
        per_issue_2s=t.integer("per_issue_2s", d.per_issue_2s, minimum=1),
        per_issue_30s=t.integer("per_issue_30s", d.per_issue_30s, minimum=1),
        serve_reserve=t.number("serve_reserve", d.serve_reserve),
    )
    if not 0 <= budgets.serve_reserve <= MAX_SERVE_RESERVE:
        raise t.error("serve_reserve", f"a share of the quota from 0 to {MAX_SERVE_RESERVE}",
                      describe(budgets.serve_reserve))
    t.done()
    return budgets


def _messages(t: Table) -> GatewayMessages:
    d = GatewayMessages()

    def patterns(name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        values: tuple[str, ...] = t.strings(name, default)
        for i, value in enumerate(values):
            try:
                re.compile(value)
            except re.error as exc:
                raise t.make_error(
                    f"{t.key(name)}[{i}]", "a regular expression", f"{value!r} ({exc})"
                ) from None
        return values

    messages = GatewayMessages(
        context_refused=patterns("context_refused", d.context_refused),
        user_refused=patterns("user_refused", d.user_refused),
        rate_limited=patterns("rate_limited", d.rate_limited),
    )
    t.done()
    return messages
