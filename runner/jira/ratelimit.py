"""Jira's rate-limit headers parsed into one value, and the scopes a 429 can limit.

Jira answers with several overlapping header families (atlassian-facts.md section 3):
``Retry-After`` (seconds or an HTTP date), ``X-RateLimit-Reset`` (ISO 8601, seconds optional),
``X-RateLimit-Limit/Remaining/NearLimit``, ``RateLimit-Reason`` on a 429, the structured
``RateLimit-Policy`` / ``RateLimit`` fields (several comma-separated items), and an edge's
``X-Failure-Category``. ``parse_rate_limit`` reads them all into a ``RateLimitInfo`` so the
budgets can keep in step with what Jira reports. A ``Beta-`` prefixed family is parsed into
``RateLimitInfo.beta`` and never enforced: Atlassian marks it informational.

A ``Scope`` names what a 429 limited, and what holds a request back: its burst key (site,
template, method), the issue it writes to, its site, and the points quota (app-wide, or the
site's own under a per-tenant tier).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from runner.retry import parse_reset, parse_retry_after

REASON_BURST = "jira-burst-based"
REASON_PER_ISSUE = "jira-per-issue-on-write"
REASON_QUOTA_GLOBAL = "jira-quota-global-based"
REASON_QUOTA_TENANT = "jira-quota-tenant-based"
REASON_COST = "jira-cost-based"
EDGE_FAILURE_CATEGORY = "FAILURE CLIENT RATE LIMITED"

ScopeKind = Literal["burst", "issue", "site", "quota"]
SfValue = int | float | str | bool


@dataclass(frozen=True)
class Scope:
    """Something a 429 can limit. ``site`` is the site's name (None for the app-wide quota)."""

    kind: ScopeKind
    site: str | None = None
    key: str = ""

    @classmethod
    def burst(cls, site: str, method: str, template: str) -> Scope:
        return cls("burst", site, f"{method.upper()} {template}")

    @classmethod
    def issue(cls, site: str, issue: str) -> Scope:
        return cls("issue", site, issue)

    @classmethod
    def of_site(cls, site: str) -> Scope:
        return cls("site", site)

    @classmethod
    def global_quota(cls) -> Scope:
        return cls("quota", None, "global")

    @classmethod
    def tenant_quota(cls, site: str) -> Scope:
        return cls("quota", site, "tenant")

    def parents(self) -> tuple[Scope, ...]:
        """The wider scopes that also hold back any request this scope holds back."""
        if self.kind == "quota" or self.site is None:
            return ()
        wider: tuple[Scope, ...] = (Scope.tenant_quota(self.site), Scope.global_quota())
        if self.kind == "site":
            return wider
        return (Scope.of_site(self.site), *wider)

    def __str__(self) -> str:
        return ":".join(part for part in (self.kind, self.site or "", self.key) if part)


def request_scopes(site: str, method: str, template: str, issue: str | None) -> tuple[Scope, ...]:
    """The narrowest scopes holding a request back (their ``parents`` hold it too)."""
    scopes = [Scope.burst(site, method, template)]
    if issue is not None:
        scopes.append(Scope.issue(site, issue))
    return tuple(scopes)


def with_parents(scopes: Iterable[Scope]) -> frozenset[Scope]:
    """``scopes`` and every wider scope above them."""
    out: set[Scope] = set()
    for scope in scopes:
        out.add(scope)
        out.update(scope.parents())
    return frozenset(out)


def scope_for_429(
    reason: str | None, *, site: str, method: str, template: str, issue: str | None
) -> Scope:
    """The scope a 429 with ``RateLimit-Reason: reason`` limited.

    An unknown reason, or an edge-style 429 without one, pauses the whole site: we can't tell
    what was hit, and the site is the widest scope that spares other sites.
    """
    if reason == REASON_BURST:
        return Scope.burst(site, method, template)
    if reason == REASON_PER_ISSUE:
        # Without the issue's name, the write endpoint is the narrowest scope that holds it.
        return Scope.issue(site, issue) if issue else Scope.burst(site, method, template)
    if reason in (REASON_QUOTA_GLOBAL, REASON_COST):
        return Scope.global_quota()
    if reason == REASON_QUOTA_TENANT:
        return Scope.tenant_quota(site)
    return Scope.of_site(site)


@dataclass(frozen=True)
class QuotaPolicy:
    """One item of ``RateLimit-Policy``: ``"global-app-quota";q=65000;w=3600``."""

    name: str
    quota: int | None = None
    window_s: float | None = None
    params: Mapping[str, SfValue] = field(default_factory=dict)


@dataclass(frozen=True)
class QuotaState:
    """One item of ``RateLimit``: ``"global-app-quota";r=120;t=600`` (``r`` only past ~80%)."""

    name: str
    remaining: int | None = None
    reset_s: float | None = None
    params: Mapping[str, SfValue] = field(default_factory=dict)


@dataclass(frozen=True)
class RateLimitInfo:
    """Everything the rate-limit headers of one response said. Absent headers stay None."""

    retry_after_s: float | None = None
    reset_at: float | None = None  # POSIX time
    limit: int | None = None
    remaining: int | None = None
    near_limit: bool = False
    reason: str | None = None
    failure_category: str | None = None
    policies: tuple[QuotaPolicy, ...] = ()
    states: tuple[QuotaState, ...] = ()
    # The Beta- family: informational, never enforced.
    beta: RateLimitInfo | None = None

    @property
    def edge(self) -> bool:
        """An edge-style 429: a failure category and no reason."""
        return self.reason is None and (self.failure_category or "").upper() == (
            EDGE_FAILURE_CATEGORY
        )

    def summary(self) -> dict[str, Any]:
        """The fields that were present, as plain values for logs and events."""
        out: dict[str, Any] = {}
        for name in ("retry_after_s", "reset_at", "limit", "remaining", "reason",
                     "failure_category"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.near_limit:
            out["near_limit"] = True
        if self.policies:
            out["policies"] = {p.name: {"q": p.quota, "w": p.window_s} for p in self.policies}
        if self.states:
            out["states"] = {s.name: {"r": s.remaining, "t": s.reset_s} for s in self.states}
        if self.beta is not None:
            out["beta"] = self.beta.summary()
        return out


def _lowered(headers: Mapping[str, str]) -> dict[str, str]:
    """Header names lower-cased; repeated headers (a multidict's) joined as one list field."""
    out: dict[str, str] = {}
    items: Iterable[tuple[str, str]] = headers.items()
    for name, value in items:
        key = name.lower()
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


def _parse_family(h: Mapping[str, str], prefix: str, now: float) -> RateLimitInfo:
    def get(name: str) -> str | None:
        return h.get(prefix + name)

    policies = tuple(
        QuotaPolicy(name, _as_int(params.get("q")), _as_float(params.get("w")), params)
        for name, params in parse_structured_list(get("ratelimit-policy") or "")
    )
    states = tuple(
        QuotaState(name, _as_int(params.get("r")), _as_float(params.get("t")), params)
        for name, params in parse_structured_list(get("ratelimit") or "")
    )
    reason = get("ratelimit-reason")
    return RateLimitInfo(
        retry_after_s=parse_retry_after(get("retry-after"), now),
        reset_at=parse_reset(get("x-ratelimit-reset")),
        limit=_int(get("x-ratelimit-limit")),
        remaining=_int(get("x-ratelimit-remaining")),
        near_limit=(get("x-ratelimit-nearlimit") or "").strip().lower() == "true",
        reason=reason.strip() if reason and reason.strip() else None,
        failure_category=get("x-failure-category"),
        policies=policies,
        states=states,
    )


def parse_rate_limit(headers: Mapping[str, str], now: float) -> RateLimitInfo:
    """Parse every rate-limit header of a response; ``now`` (POSIX) resolves HTTP dates."""
    h = _lowered(headers)
    info = _parse_family(h, "", now)
    if any(name.startswith("beta-") for name in h):
        beta = _parse_family(h, "beta-", now)
        info = replace(info, beta=beta)
    return info


def _as_int(value: SfValue | None) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    return _int(value)


def _as_float(value: SfValue | None) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(value)
    except ValueError:
        return None


def parse_structured_list(text: str) -> list[tuple[str, dict[str, SfValue]]]:
    """An RFC 8941 list of items with parameters: ``"a";q=1;w=2, b;r=3``.

    Lenient: a malformed item is skipped rather than failing the whole header, since these
    headers inform pacing and must never break a call.
    """
    out: list[tuple[str, dict[str, SfValue]]] = []
    for member in _split_top_level(text, ","):
        parts = _split_top_level(member, ";")
        if not parts or not parts[0].strip():
            continue
        name = _bare_item(parts[0].strip())
        params: dict[str, SfValue] = {}
        for part in parts[1:]:
            key, sep, raw = part.partition("=")
            key = key.strip().lower()
            if not key:
                continue
            params[key] = _bare_item(raw.strip()) if sep else True
        out.append((str(name), params))
    return out


def _split_top_level(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside double-quoted strings (which may hold escaped quotes)."""
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for ch in text:
        if escaped:
            escaped = False
        elif quoted and ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == sep and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return [p for p in parts if p.strip()]


def _bare_item(raw: str) -> SfValue:
    if len(raw) >= 2 and raw[0] == '"' and raw[-1] == '"':
        return raw[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    if raw in ("?1", "?0"):
        return raw == "?1"
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        return float(raw)
    except ValueError:
        return raw
