"""What an endpoint is given and gives back, and how a request path finds its endpoint.

Endpoints are plain functions ``(Call) -> Reply``: the pipeline (``service.py``) has already
checked the site, the token, the limits and the request's shape, so an endpoint only does Jira's
own logic and reports how many objects it read, which is what the points quota charges.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from multidict import MultiMapping

from runner.sandbox.jira.state import Issue, JiraState, SiteState


class JiraError(Exception):
    """An answer other than success, in Jira's error shape."""

    def __init__(
        self, status: int, messages: tuple[str, ...] = (), errors: Mapping[str, str] | None = None
    ) -> None:
        self.status = status
        self.messages = messages
        self.errors = dict(errors or {})
        super().__init__(f"{status}: {'; '.join(messages) or self.errors}")

    def body(self) -> dict[str, Any]:
        return {"errorMessages": list(self.messages), "errors": self.errors}


@dataclass
class Call:
    """One request as an endpoint sees it, acting as ``caller`` on ``site``."""

    state: JiraState
    site: SiteState
    caller: str  # account ID of the token's user
    params: dict[str, str]  # path parameters
    query: MultiMapping[str]
    body: Any  # parsed JSON, None without a body
    base: str  # ".../ex/jira/{cloudId}/rest/api/3", for `self` links
    now: float
    # Objects read, for the points quota: core (issue, comment...) and identity (user).
    core_reads: int = 0
    identity_reads: int = 0

    def issue(self) -> Issue:
        """The issue named by the ``issueIdOrKey`` path parameter, else Jira's 404."""
        id_or_key = self.params["issueIdOrKey"]
        issue = self.site.find(id_or_key)
        if issue is None:
            raise JiraError(404, ("Issue does not exist or you do not have permission to see it.",))
        return issue

    def flag(self, name: str, default: bool = False) -> bool:
        value = self.query.get(name)
        return default if value is None else value.lower() in ("y", "yes", "t", "true", "on", "1")

    def int_param(self, name: str, default: int) -> int:
        value = self.query.get(name)
        return default if value is None else int(value)

    def csv_param(self, name: str) -> list[str] | None:
        """A list parameter, sent repeated or comma-separated; None when absent."""
        values = self.query.getall(name, [])
        if not values:
            return None
        return [part.strip() for value in values for part in value.split(",") if part.strip()]


def entity_properties(body: Mapping[str, Any]) -> dict[str, Any]:
    """A body's ``properties: [{key, value}]`` as a dict; each property needs both."""
    out: dict[str, Any] = {}
    for prop in body.get("properties") or []:
        key = prop.get("key")
        if not isinstance(key, str) or not key or "value" not in prop:
            raise JiraError(400, errors={"properties": "Each property needs a key and a value."})
        if len(key) > 255:
            raise JiraError(400, errors={"properties": "The property key is too long."})
        out[key] = prop["value"]
    return out


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any = None  # None: no body


Endpoint = Callable[[Call], Reply]


@dataclass(frozen=True)
class Route:
    method: str
    template: str  # below /rest/api/3, e.g. "/issue/{issueIdOrKey}/comment"
    endpoint: Endpoint
    # A write to an existing issue (per-issue limit); reads and creates are not.
    issue_write: bool = False
    pattern: re.Pattern[str] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.template))
        object.__setattr__(self, "pattern", re.compile(f"^{regex}$"))

    @property
    def name(self) -> str:
        """``METHOD /rest/api/3/template``: how calls are counted and burst buckets keyed."""
        return f"{self.method} /rest/api/3{self.template}"

    @property
    def is_read(self) -> bool:
        # POST search/jql reads: Jira charges it as a read of the issues it returns.
        return self.method == "GET" or self.template == "/search/jql"


class Router:
    def __init__(self, routes: list[Route]) -> None:
        self.routes = routes

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        """The route and path parameters for ``path`` (below /rest/api/3), or None."""
        for route in self.routes:
            if route.method != method:
                continue
            found = route.pattern.match(path)
            if found:
                return route, found.groupdict()
        return None
