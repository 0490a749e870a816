"""The sandbox's system tokens: HS256 JWTs that name an OAuth client and expire.

Real system tokens are JWTs with an ``exp`` that Forge hands to the remote; clients treat them as
opaque apart from ``exp``. The sandbox signs its own with ``config.signing_secret`` so that a
test, the CLI (``forge-runner sandbox system-token``) and the admin route can make one without a
server, and the gateway can tell which environment is calling and whether the token expired.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import jwt

from runner.errors import ConfigError
from runner.sandbox.config import SandboxConfig, SandboxEnvironment

ISSUER = "forge-runner-sandbox"
_ALGORITHM = "HS256"


def _key(config: SandboxConfig) -> bytes:
    # The configured secret may be any length; HS256 wants a key of at least 32 bytes (PyJWT
    # warns otherwise), so the key is the secret's SHA-256 digest.
    return hashlib.sha256(config.signing_secret.encode()).digest()


def issue_system_token(
    config: SandboxConfig,
    environment: str,
    *,
    ttl_s: int | None = None,
    now: float | None = None,
) -> str:
    """A system token for the environment named ``environment``, valid ``ttl_s`` seconds.

    ``ttl_s`` defaults to the environment's ``system_token_ttl_s``; ``now`` to the wall clock.
    Raises ConfigError when the environment is not configured.
    """
    env = config.environments.get(environment)
    if env is None:
        known = ", ".join(sorted(config.environments)) or "none configured"
        raise ConfigError(
            f"sandbox.environments.{environment}", f"a configured environment ({known})", "missing"
        )
    issued = int(time.time() if now is None else now)
    lifetime = env.system_token_ttl_s if ttl_s is None else ttl_s
    claims = {"iss": ISSUER, "client_id": env.client_id, "iat": issued, "exp": issued + lifetime}
    return jwt.encode(claims, _key(config), algorithm=_ALGORITHM)


def verify_system_token(
    config: SandboxConfig, token: str, *, now: float
) -> SandboxEnvironment | None:
    """The environment ``token`` belongs to, or None if it is forged, foreign, unknown or expired.

    Time checks use ``now`` (the sandbox's clock), not the wall clock, so a fake clock can expire
    a token.
    """
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            _key(config),
            algorithms=[_ALGORITHM],
            issuer=ISSUER,
            options={
                "require": ["iss", "client_id", "iat", "exp"],
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
            },
        )
    except jwt.InvalidTokenError:
        return None
    exp = claims["exp"]
    client_id = claims["client_id"]
    if not isinstance(exp, int | float) or exp <= now or not isinstance(client_id, str):
        return None
    return config.environment_by_client_id(client_id)
