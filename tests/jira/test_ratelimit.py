"""Parsing Jira's rate-limit headers, and which scope each RateLimit-Reason limits."""

from __future__ import annotations

from datetime import UTC, datetime

from multidict import CIMultiDict

from runner.jira.ratelimit import (
    Scope,
    parse_rate_limit,
    parse_structured_list,
    request_scopes,
    scope_for_429,
    with_parents,
)

NOW = datetime(2026, 3, 26, 15, 30, tzinfo=UTC).timestamp()


def test_full_429_header_set() -> None:
    """Every header of a quota 429 lands in its field."""
    info = parse_rate_limit(
        {
            "Retry-After": "1800",
            "X-RateLimit-Reset": "2026-03-26T16:00Z",
            "X-RateLimit-Limit": "65000",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-NearLimit": "true",
            "RateLimit-Reason": "jira-quota-global-based",
            "RateLimit-Policy": '"global-app-quota";q=65000;w=3600',
            "RateLimit": '"global-app-quota";r=0;t=1800',
        },
        NOW,
    )
    assert info.retry_after_s == 1800
    assert info.reset_at == datetime(2026, 3, 26, 16, 0, tzinfo=UTC).timestamp()
    assert (info.limit, info.remaining, info.near_limit) == (65000, 0, True)
    assert info.reason == "jira-quota-global-based"
    assert info.policies[0].name == "global-app-quota"
    assert (info.policies[0].quota, info.policies[0].window_s) == (65000, 3600.0)
    assert (info.states[0].remaining, info.states[0].reset_s) == (0, 1800.0)
    assert info.beta is None
    assert not info.edge


def test_reset_with_seconds_and_header_case() -> None:
    """Header names are case-insensitive and a reset time may carry seconds."""
    info = parse_rate_limit({"x-ratelimit-reset": "2026-03-26T16:00:30Z"}, NOW)
    assert info.reset_at == datetime(2026, 3, 26, 16, 0, 30, tzinfo=UTC).timestamp()


def test_several_structured_items_and_repeated_headers() -> None:
    """Comma-separated items and repeated header lines all become items, params typed."""
    headers: CIMultiDict[str] = CIMultiDict()
    headers.add("RateLimit", '"global-app-quota";r=120;t=600, "burst";r=3;t=1')
    headers.add("RateLimit", '"tenant-quota";t=42')
    info = parse_rate_limit(headers, NOW)
    assert [(s.name, s.remaining, s.reset_s) for s in info.states] == [
        ("global-app-quota", 120, 600.0),
        ("burst", 3, 1.0),
        ("tenant-quota", None, 42.0),
    ]


def test_structured_list_quotes_tokens_and_booleans() -> None:
    """Quoted names may hold commas and semicolons; tokens, decimals and ?1 parse."""
    parsed = parse_structured_list('"a,b;c";q=1.5;flag, tok;x=?0;s="v"')
    assert parsed == [("a,b;c", {"q": 1.5, "flag": True}), ("tok", {"x": False, "s": "v"})]


def test_malformed_values_are_none_not_errors() -> None:
    """Garbage in a header leaves its field None instead of failing the call."""
    info = parse_rate_limit(
        {"Retry-After": "soon", "X-RateLimit-Limit": "lots", "X-RateLimit-Reset": "never"}, NOW
    )
    assert (info.retry_after_s, info.limit, info.reset_at) == (None, None, None)


def test_beta_headers_parsed_apart() -> None:
    """Beta- headers fill ``beta`` only; the enforced fields stay empty."""
    info = parse_rate_limit(
        {
            "Beta-Retry-After": "30",
            "Beta-RateLimit-Reason": "jira-burst-based",
            "Beta-RateLimit": '"global-app-quota";r=5;t=60',
        },
        NOW,
    )
    assert info.retry_after_s is None and info.reason is None and info.states == ()
    assert info.beta is not None
    assert info.beta.retry_after_s == 30
    assert info.beta.reason == "jira-burst-based"
    assert info.beta.states[0].remaining == 5
    assert info.summary()["beta"]["retry_after_s"] == 30


def test_edge_style_429_detected() -> None:
    """Only X-Failure-Category and no reason marks an edge-level 429."""
    info = parse_rate_limit(
        {"X-Failure-Category": "FAILURE CLIENT RATE LIMITED", "X-RateLimit-Remaining": "0"}, NOW
    )
    assert info.edge and info.retry_after_s is None and info.remaining == 0


def test_reason_to_scope() -> None:
    """Each RateLimit-Reason maps to its scope; unknown and missing reasons pause the site."""
    def scope(reason: str | None, issue: str | None = "MIG-1") -> Scope:
        return scope_for_429(reason, site="acme", method="put", template="/t/{id}", issue=issue)

    assert scope("jira-burst-based") == Scope("burst", "acme", "PUT /t/{id}")
    assert scope("jira-per-issue-on-write") == Scope("issue", "acme", "MIG-1")
    assert scope("jira-per-issue-on-write", None) == Scope("burst", "acme", "PUT /t/{id}")
    assert scope("jira-quota-global-based") == Scope.global_quota()
    assert scope("jira-cost-based") == Scope.global_quota()
    assert scope("jira-quota-tenant-based") == Scope("quota", "acme", "tenant")
    assert scope("jira-max-concurrent-threads-across-all-instances-per-tenant-per-user") == (
        Scope.of_site("acme")
    )
    assert scope(None) == Scope.of_site("acme")


def test_a_request_is_held_by_its_scopes_and_their_parents() -> None:
    """A write to an issue is held by its burst key, the issue, the site and both quotas."""
    held = with_parents(request_scopes("acme", "POST", "/c/{k}", "MIG-1"))
    assert held == {
        Scope.burst("acme", "POST", "/c/{k}"),
        Scope.issue("acme", "MIG-1"),
        Scope.of_site("acme"),
        Scope.tenant_quota("acme"),
        Scope.global_quota(),
    }
    assert Scope.of_site("globex") not in held
    assert str(Scope.burst("acme", "GET", "/x")) == "burst:acme:GET /x"
    assert str(Scope.global_quota()) == "quota:global"
