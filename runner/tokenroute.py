"""The loopback token route as its callers see it: where it may be, how to ask it, the secret.

A ``forge-runner serve`` process hands the freshest system token of an installation to jobs on
this host (``runner.remote.loopback`` serves the route). A ``run`` whose config says
``system_token.serve = "http://127.0.0.1:PORT"`` asks it here. Both sides share this module, so
the core (config, system-token provider) never imports the server.

    GET /system-token?installation=<installation ARI>
    200 {"token": "...", "expires_at": 1767225600}   the freshest token held (maybe expired:
                                                      the caller's provider judges and waits)
    404 {"error": "..."}                               none held yet for that installation

    POST /system-token/refused  {"installation": "<ARI>", "digest": "<SHA-256 hex of the token>"}
    204                                               the gateway refused that token: serve
                                                      drops it and never hands it out again
    400 {"error": "..."}                               not such a body

    401 / 403 (either route)                           wrong secret / not a loopback peer

A refusal names the token by its digest, so the token itself never travels again.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from runner.config.tables import Table
from runner.errors import SystemTokenError
from runner.logs.redact import register_secret

PATH = "/system-token"
REFUSED_PATH = "/system-token/refused"
SECRET_HEADER = "X-Forge-Runner-Secret"


@dataclass(frozen=True)
class SecretRef:
    """Where a shared secret is read from: an environment variable or a file (never the config
    itself). Holds the reference only, so its repr is safe."""

    env: str | None = None
    file: Path | None = None

    def read(self) -> str:
        """The secret's current value; "" when the variable or file is missing or empty."""
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


def token_digest(token: str) -> str:
    """How a refusal names a token: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


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


async def fetch_system_token(url: str, installation_id: str, secret: str,
                             environment: str) -> str:
    """The token the serve process at ``url`` holds for ``installation_id``; "" when it holds
    none yet. SystemTokenError when it can't be asked (down, wrong secret)."""
    where = f"the serve process at {url}"
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{url}{PATH}", params={"installation": installation_id},
                        headers={SECRET_HEADER: secret}, allow_redirects=False) as resp,
        ):
            if resp.status == 404:
                return ""
            if resp.status in (401, 403):
                raise SystemTokenError(environment, f"{where} refused us (HTTP {resp.status}; "
                                       "check the shared secret)")
            if resp.status != 200:
                raise SystemTokenError(environment, f"{where} answered HTTP {resp.status}")
            body = await resp.json()
    except aiohttp.ClientError as exc:
        raise SystemTokenError(environment, f"{where} is unreachable ({type(exc).__name__})") \
            from None
    token = body.get("token") if isinstance(body, dict) else None
    if not isinstance(token, str):
        raise SystemTokenError(environment, f"{where} answered without a token")
    register_secret(token)
    return token


async def report_refused_token(url: str, installation_id: str, token: str, secret: str,
                               environment: str) -> None:
    """Tell the serve process at ``url`` that the gateway refused ``token`` (by its digest), so
    it drops it. SystemTokenError when it can't be told."""
    where = f"the serve process at {url}"
    body = {"installation": installation_id, "digest": token_digest(token)}
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{url}{REFUSED_PATH}", json=body, headers={SECRET_HEADER: secret},
                         allow_redirects=False) as resp,
        ):
            status = resp.status
    except aiohttp.ClientError as exc:
        raise SystemTokenError(environment, f"{where} is unreachable ({type(exc).__name__})") \
            from None
    if status in (401, 403):
        raise SystemTokenError(environment, f"{where} refused us (HTTP {status}; check the "
                               "shared secret)")
    if status != 204:
        raise SystemTokenError(environment, f"{where} answered HTTP {status} to a refused "
                               "token's report")
