"""The system token of each installation, as Forge's invocations bring them: memory only.

Every verified invocation carries ``x-forge-oauth-system`` for the installation named in its
FIT. The store keeps, per installation, the token with the latest ``exp`` (a redelivery or a
slow request may bring an older one after a newer one), a few runners-up to fall back on, and
what the FIT says about the installation (cloud ID, API base URL, environment). Nothing here is
ever written to disk or logged: the token lives in a ``repr=False`` field and is registered
with the log redactor.

The FIT's signature covers the invocation, not the ``x-forge-oauth-system`` header, so the
header's ``exp`` is a claim nobody vouched for. Two bounds keep a made-up token from pushing
the real ones out: an ``exp`` later than arrival + 4 h (Forge's tokens live at most that) +
leeway is not believed and the token is not kept; and a token the gateway refused (a run says
so over the loopback route) is dropped and never kept again, so the runner-up takes its place.

Jobs read from here through the loopback token route (``runner.remote.loopback``), so a job run
by this process and a ``run`` on the same host get their tokens the same way.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import structlog

from runner.logs.redact import register_secret
from runner.minting.system_tokens import jwt_exp
from runner.tokenroute import token_digest

log = structlog.get_logger("runner.remote.tokens")

# Forge's system tokens live at most 4 hours (atlassian-facts.md section 2).
MAX_LIFETIME_S = 4 * 3600.0
# Tokens kept per installation: the freshest, and runners-up for when it is refused.
KEPT_PER_INSTALLATION = 4
# Digests of refused tokens remembered (a refused token is at most 4 h of deliveries old).
MAX_REFUSED = 4096


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
    """Per installation: its description and its freshest system tokens."""

    def __init__(self, clock: Callable[[], float], *, leeway_s: float = 10.0) -> None:
        self._clock = clock
        self._leeway = leeway_s
        self._installations: dict[str, Installation] = {}
        self._tokens: dict[str, list[HeldToken]] = {}
        self._refused: OrderedDict[str, None] = OrderedDict()
        # The token each installation's last offer kept (what "kept" answers are relative to).
        self._kept: dict[str, str] = {}

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
        """Keep ``token`` among the installation's; True when it is now the one handed out and
        was not when last offered."""
        if not token:
            return False
        register_secret(token)
        now = self._clock()
        if token_digest(token) in self._refused:
            log.warning("runner.remote.system_token.not_kept", installation=installation_id,
                        reason="the gateway refused this token before")
            return False
        candidate = HeldToken(token, jwt_exp(token), now)
        latest = now + MAX_LIFETIME_S + self._leeway
        if candidate.expires_at is not None and candidate.expires_at > latest:
            log.warning("runner.remote.system_token.not_kept", installation=installation_id,
                        reason=f"its exp is {candidate.expires_at - now:.0f} s away; Forge's "
                        f"tokens live at most {MAX_LIFETIME_S:.0f} s")
            return False
        if self._kept.get(installation_id) == token:
            return False
        held = [h for h in self._tokens.get(installation_id, []) if h.token != token]
        ranked = sorted([*held, candidate], key=lambda h: _rank(h, now), reverse=True)
        # Expired runners-up are of no use to fall back on; the best is kept whatever it is.
        kept = [ranked[0], *(h for h in ranked[1:] if not _expired(h, now))]
        self._tokens[installation_id] = kept[:KEPT_PER_INSTALLATION]
        if ranked[0] is not candidate:
            return False
        self._kept[installation_id] = token
        log.info("runner.remote.system_token.kept", installation=installation_id,
                 expires_at=candidate.expires_at)
        return True

    def token(self, installation_id: str) -> HeldToken | None:
        """The freshest token held for the installation (possibly expired), or None."""
        held = self._tokens.get(installation_id)
        if not held:
            return None
        now = self._clock()
        return max(held, key=lambda h: _rank(h, now))

    def refuse(self, installation_id: str, digest: str) -> bool:
        """The gateway refused the token whose SHA-256 is ``digest``: drop it and never keep
        it again. True when it was held."""
        self._refused[digest] = None
        self._refused.move_to_end(digest)
        while len(self._refused) > MAX_REFUSED:
            self._refused.popitem(last=False)
        held = self._tokens.get(installation_id, [])
        left = [h for h in held if token_digest(h.token) != digest]
        if len(left) == len(held):
            return False
        self._tokens[installation_id] = left
        log.warning("runner.remote.system_token.dropped", installation=installation_id,
                    reason="the gateway refused it", left=len(left))
        return True


def _expired(held: HeldToken, now: float) -> bool:
    return held.expires_at is not None and held.expires_at <= now


def _rank(held: HeldToken, now: float) -> tuple[int, float]:
    """Higher is handed out first: a valid JWT by its exp, then an opaque token (expiry
    unknown) by its arrival, then an expired JWT by its exp."""
    if held.expires_at is None:
        return (1, held.received_at)
    return (2 if held.expires_at > now else 0, held.expires_at)
