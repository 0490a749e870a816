"""The system token of each installation, as Forge's invocations bring them: memory only.

Every verified invocation carries ``x-forge-oauth-system`` for the installation named in its
FIT. The store keeps, per installation, the token with the latest ``exp`` (a redelivery or a
slow request may bring an older one after a newer one), and what the FIT says about the
installation (cloud ID, API base URL, environment). Nothing here is ever written to disk or
logged: the token lives in a ``repr=False`` field and is registered with the log redactor.

Jobs read from here through the loopback token route (``runner.remote.loopback``), so a job run
by this process and a ``run`` on the same host get their tokens the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import structlog

from runner.logs.redact import register_secret
from runner.minting.system_tokens import jwt_exp

log = structlog.get_logger("runner.remote.tokens")


@dataclass(frozen=True)
class Installation:
    """One installation of the app, as its FITs describe it."""

    installation_id: str
    cloud_id: str
    api_base_url: str
    environment_type: str  # DEVELOPMENT | STAGING | PRODUCTION
    environment_id: str
    first_seen: float


@dataclass(frozen=True)
class HeldToken:
    token: str = field(repr=False)
    # The JWT's exp; None for an opaque token (then the newest arrival wins).
    expires_at: float | None
    received_at: float


class TokenStore:
    """Per installation: its description and its freshest system token."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._installations: dict[str, Installation] = {}
        self._tokens: dict[str, HeldToken] = {}

    def installation(self, installation_id: str) -> Installation | None:
        return self._installations.get(installation_id)

    def installations(self) -> list[Installation]:
        return list(self._installations.values())

    def see(self, inst: Installation) -> bool:
        """Record (or refresh) an installation's description; True the first time it is seen."""
        known = self._installations.get(inst.installation_id)
        if known is None:
            self._installations[inst.installation_id] = inst
            log.info("runner.remote.installation.new", installation=inst.installation_id,
                     cloud_id=inst.cloud_id, environment=inst.environment_type)
            return True
        if (known.cloud_id, known.api_base_url) != (inst.cloud_id, inst.api_base_url):
            self._installations[inst.installation_id] = replace(inst, first_seen=known.first_seen)
        return False

    def offer(self, installation_id: str, token: str) -> bool:
        """Keep ``token`` if it lives longer than the one held; True when it was kept."""
        if not token:
            return False
        register_secret(token)
        now = self._clock()
        candidate = HeldToken(token, jwt_exp(token), now)
        held = self._tokens.get(installation_id)
        if held is not None and not _newer(candidate, held, now):
            return False
        self._tokens[installation_id] = candidate
        log.info("runner.remote.system_token.kept", installation=installation_id,
                 expires_at=candidate.expires_at)
        return True

    def token(self, installation_id: str) -> HeldToken | None:
        """The freshest token held for the installation (possibly expired), or None."""
        return self._tokens.get(installation_id)


def _newer(candidate: HeldToken, held: HeldToken, now: float) -> bool:
    if candidate.token == held.token:
        return False
    if candidate.expires_at is not None and held.expires_at is not None:
        return candidate.expires_at > held.expires_at
    # An opaque token does not displace a known one that is still valid.
    return held.expires_at is None or held.expires_at <= now
