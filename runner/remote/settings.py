"""The ``[serve]`` section of a config file: the remote endpoint Forge invokes, as frozen values.

    [serve]
    port = 8780
    environment = "dev"            # the runner environment installations belong to
    jwks_url = "https://forge.cdn.prod.atlassian-dev.net/.well-known/jwks.json"

    [serve.token_endpoint]         # fresh system tokens for `run` on this host, loopback only
    port = 8781
    secret_env = "FORGE_RUNNER_SERVE_SECRET"

    [serve.status]                 # /status from elsewhere than loopback: the operator token
    secret_env = "FORGE_RUNNER_OPERATOR_TOKEN"

    [serve.seal]                   # replicas on a PostgreSQL journal: the tokens' AES-GCM key
    secret_env = "FORGE_RUNNER_SEAL_KEY"

    [[serve.routes]]
    path = "/forge/nightly"
    kind = "job"                   # lifecycle | refresh | job
    job = "jobs/nightly-sync.toml"
    interval = "day"

``load_config`` keeps the table as read (``Config.serve_table``); ``serve_config`` reads it,
with errors naming ``serve.…`` and the file, before anything listens.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from runner.config.ari import AriError, validate_ari
from runner.config.configfile import Config, EnvironmentConfig
from runner.config.tables import Table, describe
from runner.errors import ConfigError
from runner.tokenroute import SecretRef, secret_ref

DEFAULT_JWKS_URL = "https://forge.cdn.prod.atlassian-dev.net/.well-known/jwks.json"
DEFAULT_CONTEXT_ARI = "ari:cloud:jira:{cloud_id}:workspace/{cloud_id}"

RouteKind = Literal["lifecycle", "refresh", "job"]
Interval = Literal["fiveMinute", "hour", "day", "week"]
ROUTE_KINDS: tuple[RouteKind, ...] = ("lifecycle", "refresh", "job")
INTERVAL_NAMES: tuple[Interval, ...] = ("fiveMinute", "hour", "day", "week")
# Forge's scheduled-trigger intervals, in seconds.
INTERVALS: Mapping[str, float] = {
    "fiveMinute": 300.0,
    "hour": 3600.0,
    "day": 86400.0,
    "week": 604800.0,
}


@dataclass(frozen=True)
class ServeRoute:
    """One path Forge invokes, and what an invocation of it does.

    Every verified invocation keeps the system token it carries; on top of that a ``lifecycle``
    route registers the installation, a ``refresh`` route does nothing more (it exists to bring
    a fresh token), and a ``job`` route starts the job template once per installation and
    interval."""

    path: str
    kind: RouteKind
    job: Path | None = None
    interval: Interval = "day"
    # Deliveries for the same installation within this long of an accepted one are duplicates
    # or redeliveries. Default: half the interval (Forge redelivers within minutes, and the next
    # real trigger comes an interval later).
    dedup_window_s: float = 43200.0


@dataclass(frozen=True)
class TokenEndpoint:
    """The loopback-only route that hands the freshest system token to ``run`` on this host."""

    port: int = 8781
    # None: no secret configured; the route then serves only this process's own jobs, with a
    # secret made up at start and never written anywhere.
    secret: SecretRef | None = None


@dataclass(frozen=True)
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 8780
    # The runner environment installations belong to: its app_id is the FIT's expected aud,
    # its gateway and mint bucket serve every installation's jobs.
    environment: str = ""
    jwks_url: str = DEFAULT_JWKS_URL
    # Clock skew allowed on exp / nbf / iat.
    leeway_s: float = 10.0
    # An unknown kid fetches the JWKS again at most this often (then backs off to the max).
    jwks_refetch_min_s: float = 30.0
    jwks_refetch_max_s: float = 600.0
    # Keys older than this are fetched again before use (rotation without a new kid).
    jwks_max_age_s: float = 3600.0
    # A new installation's site: its context ARI ({cloud_id} filled in).
    context_ari: str = DEFAULT_CONTEXT_ARI
    # How long a job's work waits for a valid system token (the hourly trigger brings one).
    token_max_wait_s: float = 7200.0
    token_endpoint: TokenEndpoint = TokenEndpoint()
    routes: tuple[ServeRoute, ...] = ()
    # The status page from elsewhere than loopback needs this token ([serve.status]).
    operator_token: SecretRef | None = None
    # Where the key sealing system tokens in a PostgreSQL journal is read ([serve.seal]).
    seal_key: SecretRef | None = None


def serve_config(config: Config) -> ServeConfig | None:
    """The config's ``[serve]`` table read and checked; None when it has none. ConfigError
    names the file and the key's path (``serve.routes[0].kind``)."""
    if config.serve_table is None:
        return None

    def error(key: str, expected: str, found: str) -> ConfigError:
        return ConfigError(key, expected, found, file=config.path)

    table = Table(config.serve_table, "serve", error)
    return load_serve_config(table, config.path.resolve().parent, config.environments)


def require_serve_config(config: Config) -> ServeConfig:
    """``serve_config``, refusing a config without a ``[serve]`` section."""
    serve = serve_config(config)
    if serve is None:
        raise ConfigError("serve", "a [serve] section (routes Forge invokes)", "none",
                          file=config.path)
    return serve


def load_serve_config(t: Table, base: Path,
                      environments: Mapping[str, EnvironmentConfig]) -> ServeConfig:
    """Read the ``[serve]`` table ``t``; ``environments`` are the config's (to name one)."""
    d = ServeConfig()
    only = next(iter(environments)) if len(environments) == 1 else None
    environment = t.nonempty("environment", only, expected="an environment's name")
    if environment is None or environment not in environments:
        known = ", ".join(sorted(environments)) or "none are configured"
        raise t.error("environment", f"a configured environment ({known})", repr(environment))
    context_ari: str = t.nonempty("context_ari", d.context_ari)
    try:
        validate_ari(context_ari.replace("{cloud_id}", "00000000-0000-0000-0000-000000000000"))
    except AriError as exc:
        raise t.error("context_ari", f"an ARI of the form {exc.expected} ({{cloud_id}} is "
                      "filled in)", describe(context_ari)) from None
    jwks_url: str = t.nonempty("jwks_url", d.jwks_url)
    if not re.fullmatch(r"https?://\S+", jwks_url):
        raise t.error("jwks_url", "an http:// or https:// URL", describe(jwks_url))
    config = ServeConfig(
        host=t.nonempty("host", d.host, expected="an address to listen on"),
        port=t.integer("port", d.port, minimum=0),
        environment=environment,
        jwks_url=jwks_url,
        leeway_s=t.number("leeway_s", d.leeway_s, minimum=0),
        jwks_refetch_min_s=t.number("jwks_refetch_min_s", d.jwks_refetch_min_s, minimum=0),
        jwks_refetch_max_s=t.number("jwks_refetch_max_s", d.jwks_refetch_max_s, minimum=0),
        jwks_max_age_s=t.number("jwks_max_age_s", d.jwks_max_age_s, positive=True),
        context_ari=context_ari,
        token_max_wait_s=t.number("token_max_wait_s", d.token_max_wait_s, minimum=0),
        token_endpoint=_token_endpoint(t.table("token_endpoint"), base),
        routes=_routes(t, base),
        operator_token=_status(t.table("status"), base),
        seal_key=_status(t.table("seal"), base),
    )
    t.done()
    return config


def _token_endpoint(t: Table, base: Path) -> TokenEndpoint:
    if "host" in t:
        raise t.error("host", "no host (the token endpoint listens on 127.0.0.1 only)",
                      describe(t.raw("host")))
    endpoint = TokenEndpoint(
        port=t.integer("port", TokenEndpoint.port, minimum=0),
        secret=secret_ref(t, base, required=False),
    )
    t.done()
    return endpoint


def _status(t: Table, base: Path) -> SecretRef | None:
    ref = secret_ref(t, base, required=False)
    t.done()
    return ref


def _routes(t: Table, base: Path) -> tuple[ServeRoute, ...]:
    routes: list[ServeRoute] = []
    seen: set[str] = set()
    for r in t.table_list("routes"):
        path: str = r.nonempty("path", expected="a URL path")
        if not re.fullmatch(r"/[A-Za-z0-9._~/-]*", path):
            raise r.error("path", "a URL path starting with /", describe(path))
        if path in seen:
            raise r.error("path", "each path once", f"{path!r} again")
        seen.add(path)
        kind = r.nonempty("kind", expected="lifecycle, refresh or job")
        if kind not in ROUTE_KINDS:
            raise r.error("kind", "lifecycle, refresh or job", describe(kind))
        job = None
        if kind == "job":
            name = r.nonempty("job", expected="the job template's path")
            job = Path(name).expanduser()
            job = job if job.is_absolute() else base / job
        elif "job" in r:
            raise r.error("job", "no job (only a kind = \"job\" route starts one)", "a job")
        interval = r.nonempty("interval", "day", expected="fiveMinute, hour, day or week")
        if interval not in INTERVAL_NAMES:
            raise r.error("interval", "fiveMinute, hour, day or week", describe(interval))
        window = r.number("dedup_window_s", INTERVALS[interval] / 2, positive=True)
        routes.append(ServeRoute(path, kind, job, interval, window))
        r.done()
    return tuple(routes)
