"""The ``[serve]`` section of a config file: the remote endpoint Forge invokes, as frozen values.

    [serve]
    port = 8780
    environment = "dev"            # the runner environment installations belong to
    jwks_url = "https://forge.cdn.prod.atlassian-dev.net/.well-known/jwks.json"

    [serve.token_endpoint]         # fresh system tokens for `run` on this host, loopback only
    port = 8781
    secret_env = "FORGE_RUNNER_SERVE_SECRET"

    [[serve.routes]]
    path = "/forge/nightly"
    kind = "job"                   # lifecycle | refresh | job
    job = "jobs/nightly-sync.toml"
    interval = "day"

Read by ``load_config`` through ``load_serve_config``; nothing here imports the config module,
which imports this one.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from runner.ari import AriError, validate_ari
from runner.tables import Table, describe

DEFAULT_JWKS_URL = "https://forge.cdn.prod.atlassian-dev.net/.well-known/jwks.json"
DEFAULT_CONTEXT_ARI = "ari:cloud:jira:{cloud_id}:workspace/{cloud_id}"

RouteKind = Literal["lifecycle", "refresh", "job"]
Interval = Literal["fiveMinute", "hour", "day", "week"]
ROUTE_KINDS: tuple[RouteKind, ...] = ("lifecycle", "refresh", "job")
# Forge's scheduled-trigger intervals, in seconds.
INTERVALS: Mapping[str, float] = {
    "fiveMinute": 300.0,
    "hour": 3600.0,
    "day": 86400.0,
    "week": 604800.0,
}


@dataclass(frozen=True)
class SecretRef:
    """Where a shared secret is read from: an environment variable or a file (never the config
    itself). Holds the reference only, so its repr is safe."""

    env: str | None = None
    file: Path | None = None

    def read(self) -> str:
        """The secret's current value; "" when the variable or file is missing or empty."""
        import os

        if self.env:
            return os.environ.get(self.env, "").strip()
        if self.file is not None:
            try:
                return self.file.read_text().strip()
            except OSError:
                return ""
        return ""

    def describe(self) -> str:
        if self.env:
            return f"environment variable {self.env}"
        return f"file {self.file}" if self.file is not None else "nothing"


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


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def loopback_url_problem(url: str) -> str | None:
    """Why ``url`` is not an http:// URL on a loopback address, or None when it is."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"not a URL ({exc})"
    if parts.scheme != "http" or not parts.hostname or port is None:
        return "not an http://HOST:PORT URL"
    if not is_loopback(parts.hostname):
        return f"{parts.hostname} is not a loopback address"
    return None


def load_serve_config(t: Table, base: Path, environments: Mapping[str, Any]) -> ServeConfig:
    """Read the ``[serve]`` table; ``environments`` are the config's (to name one)."""
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
    )
    t.done()
    return config


def secret_ref(t: Table, base: Path, required: bool) -> SecretRef | None:
    """``secret_env`` or ``secret_file`` of table ``t`` (at most one; one if ``required``)."""
    if "secret" in t:
        raise t.error("secret", "secret_env or secret_file (where the secret is read from)",
                      "a secret in the file (secrets never live in the config)")
    env = t.nonempty("secret_env", None, expected="an environment variable name")
    file = t.nonempty("secret_file", None, expected="a file path")
    if env is not None and file is not None:
        raise t.error("secret_env", "one of secret_env or secret_file", "both")
    if env is None and file is None:
        if required:
            raise t.error("secret_env", "one of secret_env or secret_file", "neither")
        return None
    path = None
    if file is not None:
        path = Path(file).expanduser()
        path = path if path.is_absolute() else base / path
    return SecretRef(env=env, file=path)


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
        if interval not in INTERVALS:
            raise r.error("interval", "fiveMinute, hour, day or week", describe(interval))
        window = r.number("dedup_window_s", INTERVALS[interval] / 2, positive=True)
        routes.append(ServeRoute(path, kind, job, interval, window))
        r.done()
    return tuple(routes)
