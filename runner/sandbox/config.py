"""The sandbox's configuration: the ``[sandbox]`` section of a config file, as frozen dataclasses.

Every rule of the simulated cloud is a field here, so a test can tighten any of them with
``dataclasses.replace`` or by writing its own TOML. Defaults follow ``atlassian-facts.md``.

``load_config`` keeps the table as read (``Config.sandbox_table``); ``sandbox_config`` reads it.
``forge-runner sandbox`` reads the table alone (``load_sandbox_config``), with no runner config.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from runner.errors import ConfigError

if TYPE_CHECKING:
    # For the annotation only: signing a sandbox token loads nothing of the runner's config.
    from runner.config.configfile import Config

UserState = Literal["active", "deactivated", "no_access"]
MintAlgorithm = Literal["sliding", "fixed", "token_bucket"]
MintFailure = Literal["retry_after", "reset_header", "graphql_error"]

DEFAULT_CONTEXT_ARI = "ari:cloud:jira:{cloud_id}:workspace/{cloud_id}"
DEFAULT_WORKFLOW: tuple[tuple[str, str, str], ...] = (
    ("11", "To Do", "To Do"),
    ("21", "In Progress", "In Progress"),
    ("31", "Done", "Done"),
)


@dataclass(frozen=True)
class SandboxUser:
    account_id: str
    name: str = ""
    state: UserState = "active"


@dataclass(frozen=True)
class SandboxIssue:
    key: str
    project: str
    summary: str = ""
    status: str = "To Do"


@dataclass(frozen=True)
class Transition:
    id: str
    name: str
    to: str


@dataclass(frozen=True)
class SandboxSite:
    name: str
    cloud_id: str
    accepted_context_aris: tuple[str, ...] = (DEFAULT_CONTEXT_ARI,)
    users: tuple[SandboxUser, ...] = ()
    active_account_pattern: str | None = None
    issues: tuple[SandboxIssue, ...] = ()
    projects: tuple[str, ...] = ()
    workflow: tuple[Transition, ...] = tuple(Transition(*t) for t in DEFAULT_WORKFLOW)

    def context_aris(self) -> tuple[str, ...]:
        """The accepted context ARIs with ``{cloud_id}`` filled in."""
        return tuple(a.format(cloud_id=self.cloud_id) for a in self.accepted_context_aris)

    def user_state(self, account_id: str) -> UserState | None:
        """The state of ``account_id`` on this site, or None for an unknown user."""
        for user in self.users:
            if user.account_id == account_id:
                return user.state
        if self.active_account_pattern and re.fullmatch(self.active_account_pattern, account_id):
            return "active"
        return None


@dataclass(frozen=True)
class SandboxEnvironment:
    """One OAuth client of the simulated gateway."""

    name: str
    client_id: str
    allow_impersonation: bool = True
    token_ttl_s: int = 3600
    system_token_ttl_s: int = 14400


@dataclass(frozen=True)
class MintLimit:
    limit: int = 1000
    window_s: float = 60.0
    algorithm: MintAlgorithm = "sliding"
    failure: MintFailure = "retry_after"


@dataclass(frozen=True)
class JiraLimits:
    quota_points: int = 65000
    quota_window_s: float = 3600.0
    burst_get_post: int = 100
    burst_put_delete: int = 50
    per_issue_2s: int = 20
    per_issue_30s: int = 100
    beta_headers: bool = False
    edge_429_rate: float = 0.0
    enabled: bool = True


@dataclass(frozen=True)
class Faults:
    http_500: float = 0.0
    http_502: float = 0.0
    http_503: float = 0.0
    retry_after_503_s: int = 1
    drop_connection: float = 0.0
    latency_ms_min: float = 0.0
    latency_ms_max: float = 0.0
    # Only requests to these cloud IDs get faults; empty means every site.
    only_cloud_ids: tuple[str, ...] = ()
    # Fraction of injected 5xx and drops that strike after the request took effect: the write
    # happened, its answer is lost (what a client must check before sending a create again).
    after_effect: float = 0.0


@dataclass(frozen=True)
class ForgeTrigger:
    """A scheduled trigger of the app, invoking the remote's ``path`` every ``interval``."""

    key: str
    path: str
    interval: str = "hour"  # fiveMinute | hour | day | week
    # Each installation's first delivery comes at a seeded offset within this many seconds
    # (Forge spreads installations over the interval). Default: the whole interval.
    spread_s: float = -1.0
    # Seeded fractions of deliveries sent twice, and of answers treated as lost (redelivered).
    duplicate_rate: float = 0.0
    lost_answer_rate: float = 0.0


@dataclass(frozen=True)
class ForgeSettings:
    """The sandbox playing Forge: invoking a remote (``forge-runner serve``) as Forge would."""

    enabled: bool = False
    # Where the remote listens; "" until set (a test sets it once the remote is up).
    remote_url: str = ""
    app_id: str = "ari:cloud:ecosystem::app/8db5c0f5-3a48-4d2b-9c4b-4d2f0a7e6a11"
    # The sandbox environment whose system tokens ride on each invocation.
    environment: str = "dev"
    environment_type: str = "DEVELOPMENT"
    lifecycle_path: str = "/forge/lifecycle"
    # Sites the app is installed on when the sandbox starts (installed events are sent).
    install: tuple[str, ...] = ()
    # Lifetime of each Forge Invocation Token (Forge's example lives 25 s).
    fit_ttl_s: float = 25.0
    # Simulated seconds per real second for the schedule and redelivery delays.
    time_scale: float = 1.0
    # Real seconds the remote has to answer before the delivery counts as failed.
    answer_timeout_s: float = 5.0
    redelivery_delay_s: float = 60.0
    max_redeliveries: int = 4
    # Run the triggers on their intervals while the sandbox serves.
    schedule: bool = True
    triggers: tuple[ForgeTrigger, ...] = ()


@dataclass(frozen=True)
class SandboxConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    seed: int = 1
    embedded: bool = False
    spec_dir: Path | None = None
    signing_secret: str = field(default="sandbox-only-not-a-secret", repr=False)
    # Seconds before ``search/jql`` finds an issue created through the API (Jira's search is
    # eventually consistent); 0 finds it at once.
    search_lag_s: float = 3.0
    # Log every Jira request's and mint's arrival (``arrivals.py``) and serve the logs at
    # ``GET /_sandbox/arrivals``, for tests that check a run from the server's side. Off by
    # default: the logs grow with the job.
    record_arrivals: bool = False
    environments: Mapping[str, SandboxEnvironment] = field(default_factory=dict)
    sites: Mapping[str, SandboxSite] = field(default_factory=dict)
    mint_limit: MintLimit = MintLimit()
    jira_limits: JiraLimits = JiraLimits()
    faults: Faults = Faults()
    forge: ForgeSettings = ForgeSettings()

    def site_by_cloud_id(self, cloud_id: str) -> SandboxSite | None:
        for site in self.sites.values():
            if site.cloud_id == cloud_id:
                return site
        return None

    def environment_by_client_id(self, client_id: str) -> SandboxEnvironment | None:
        for env in self.environments.values():
            if env.client_id == client_id:
                return env
        return None


T = TypeVar("T")


def _take(table: Mapping[str, Any], path: str, cls: type[T], **overrides: Any) -> T:
    """Build dataclass ``cls`` from ``table``, naming the key path of any bad or unknown key."""
    fields: dict[str, Any] = getattr(cls, "__dataclass_fields__")  # noqa: B009
    known = set(fields)
    unknown = set(table) - known
    if unknown:
        raise ConfigError(f"{path}.{sorted(unknown)[0]}", "a known key", "unknown key")
    values = {**table, **overrides}
    for name, value in values.items():
        default = fields[name].default
        if isinstance(default, bool) and not isinstance(value, bool):
            raise ConfigError(f"{path}.{name}", "true or false", repr(value))
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        if isinstance(default, int | float) and not isinstance(default, bool) and not is_number:
            raise ConfigError(f"{path}.{name}", "a number", repr(value))
    return cls(**values)


def sandbox_config(config: Config) -> SandboxConfig | None:
    """The config's ``[sandbox]`` table read and checked; None when it has none."""
    if config.sandbox_table is None:
        return None
    return load_sandbox_config(config.sandbox_table, config.path.resolve().parent,
                               file=config.path)


def load_sandbox_config(table: Mapping[str, Any], base_dir: Path | None = None, *,
                        file: Path | None = None) -> SandboxConfig:
    """Build a SandboxConfig from the ``[sandbox]`` table of a parsed config file. A
    ConfigError names ``file`` and the key's path (``sandbox.port``)."""
    try:
        return _sandbox(table, base_dir)
    except ConfigError as exc:
        raise ConfigError(exc.key, exc.expected, exc.found, file=file) from None
    except (TypeError, ValueError, AttributeError) as exc:
        # A table where a value belongs, or the like: the loader's own checks did not catch it.
        raise ConfigError("sandbox", "the documented shape", str(exc), file=file) from None


def _sandbox(table: Mapping[str, Any], base_dir: Path | None) -> SandboxConfig:
    t = dict(table)
    envs = {
        name: _take(dict(e), f"sandbox.environments.{name}", SandboxEnvironment, name=name)
        for name, e in t.pop("environments", {}).items()
    }
    sites: dict[str, SandboxSite] = {}
    for name, s in t.pop("sites", {}).items():
        s = dict(s)
        path = f"sandbox.sites.{name}"
        users = tuple(
            _take(u, f"{path}.users[{i}]", SandboxUser) for i, u in enumerate(s.pop("users", []))
        )
        issues = tuple(
            _take(x, f"{path}.issues[{i}]", SandboxIssue) for i, x in enumerate(s.pop("issues", []))
        )
        workflow = tuple(
            _take(w, f"{path}.workflow[{i}]", Transition)
            for i, w in enumerate(s.pop("workflow", []))
        ) or SandboxSite.workflow
        if "cloud_id" not in s:
            raise ConfigError(f"{path}.cloud_id", "the site's cloud ID", "missing")
        sites[name] = _take(
            s,
            path,
            SandboxSite,
            name=name,
            users=users,
            issues=issues,
            workflow=workflow,
            accepted_context_aris=tuple(s.get("accepted_context_aris", (DEFAULT_CONTEXT_ARI,))),
            projects=tuple(s.get("projects", ())),
        )
    mint = _take(t.pop("mint_limit", {}), "sandbox.mint_limit", MintLimit)
    if mint.algorithm not in ("sliding", "fixed", "token_bucket"):
        raise ConfigError(
            "sandbox.mint_limit.algorithm", "sliding, fixed or token_bucket", mint.algorithm
        )
    if mint.failure not in ("retry_after", "reset_header", "graphql_error"):
        raise ConfigError(
            "sandbox.mint_limit.failure", "retry_after, reset_header or graphql_error", mint.failure
        )
    limits = _take(t.pop("jira_limits", {}), "sandbox.jira_limits", JiraLimits)
    faults_t = dict(t.pop("faults", {}))
    faults = _take(
        faults_t,
        "sandbox.faults",
        Faults,
        only_cloud_ids=tuple(faults_t.get("only_cloud_ids", ())),
    )
    forge = _forge(dict(t.pop("forge", {})))
    lag = t.get("search_lag_s", SandboxConfig.search_lag_s)
    if isinstance(lag, int | float) and not isinstance(lag, bool) and lag < 0:
        raise ConfigError("sandbox.search_lag_s", "a number >= 0", repr(lag))
    spec_dir = t.pop("spec_dir", None)
    if spec_dir is not None:
        spec_path = Path(spec_dir)
        if base_dir is not None and not spec_path.is_absolute():
            spec_path = base_dir / spec_path
        t["spec_dir"] = spec_path
    return _take(
        t,
        "sandbox",
        SandboxConfig,
        environments=envs,
        sites=sites,
        mint_limit=mint,
        jira_limits=limits,
        faults=faults,
        forge=forge,
    )


def _forge(t: dict[str, Any]) -> ForgeSettings:
    triggers = tuple(
        _take(dict(x), f"sandbox.forge.triggers[{i}]", ForgeTrigger)
        for i, x in enumerate(t.pop("triggers", []))
    )
    for i, trigger in enumerate(triggers):
        if trigger.interval not in ("fiveMinute", "hour", "day", "week"):
            raise ConfigError(f"sandbox.forge.triggers[{i}].interval",
                              "fiveMinute, hour, day or week", repr(trigger.interval))
    forge = _take(t, "sandbox.forge", ForgeSettings, triggers=triggers,
                  install=tuple(t.get("install", ())))
    if forge.time_scale <= 0:
        raise ConfigError("sandbox.forge.time_scale", "a number > 0", repr(forge.time_scale))
    return forge
