"""The Jira client a Python action gets: bound to one user on one site.

``await jira.request("POST", "/rest/api/3/issue/MIG-1/comment", json=...)`` goes through the
same executor as the built-ins, so it waits for the same budgets and cooldowns and follows the
same Jira retry policy. Its endpoint key (the burst budget's) is the spec template the path
matches among the common endpoints, else the path itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote

from runner.actions.base import CORE_OBJECT_COST, REQUEST_COST, WRITE_COST
from runner.actions.raw import METHODS, match_template
from runner.config.configfile import SiteConfig
from runner.errors import JiraCallError, JiraUncertainError
from runner.jira.client import JiraRequest
from runner.jira.executor import CallExecutor, Done, Uncertain


class UserJira:
    """Jira REST as ``account_id`` on ``site``. Raises ``JiraCallError`` when a call fails for
    good and ``JiraUncertainError`` when a write's outcome is unknown (it is not sent again)."""

    def __init__(
        self,
        executor: CallExecutor,
        site: SiteConfig,
        account_id: str,
        *,
        deadline: float | None = None,
    ) -> None:
        self._executor = executor
        self.site = site
        self.account_id = account_id
        self._deadline = deadline

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        json: Any = None,
        idempotent: bool | None = None,
    ) -> Any:
        """Send one call and return the answer's body (parsed JSON, text, or None when empty).

        ``path`` is relative to the site's API base URL (``/rest/api/3/myself``) and may carry a
        query string. ``idempotent`` defaults to True for every method but POST: a POST is not
        sent again after an unclear failure unless you say it is safe.
        """
        request = build_request(method, path, query=query, json=json, idempotent=idempotent)
        result = await self._executor.execute(
            self.site, self.account_id, request, deadline=self._deadline
        )
        if isinstance(result, Done):
            return result.response.body
        what = f"{request.method} {request.path} on {self.site.name}"
        if isinstance(result, Uncertain):
            raise JiraUncertainError(what, result.reason, status=result.status)
        raise JiraCallError(what, result.reason, status=result.status, messages=result.messages)


def build_request(
    method: str,
    path: str,
    *,
    query: Mapping[str, str] | None = None,
    json: Any = None,
    idempotent: bool | None = None,
) -> JiraRequest:
    """The ``JiraRequest`` for a call made by hand: template, issue and cost inferred."""
    method = method.upper()
    if method not in METHODS:
        raise ValueError(f"method: expected one of {', '.join(METHODS)}, found {method!r}")
    path, _, query_text = path.partition("?")
    if not path.startswith("/"):
        path = "/" + path
    merged = dict(parse_qsl(query_text, keep_blank_values=True))
    merged.update({str(k): str(v) for k, v in (query or {}).items()})
    template, issue_at = match_template(path)
    issue = None
    if issue_at is not None and method != "GET":
        issue = unquote(path.split("/")[issue_at])
    return JiraRequest(
        method,
        path,
        template,
        query=merged,
        json=json,
        idempotent=method != "POST" if idempotent is None else idempotent,
        cost=REQUEST_COST + CORE_OBJECT_COST if method == "GET" else WRITE_COST,
        issue=issue,
    )
