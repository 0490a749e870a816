"""Was it created? Looking for a create whose outcome is unknown before sending it again.

Every create forge-runner sends carries the entity property ``forge-runner.item`` holding its
item key (``runner.actions.ITEM_PROPERTY_KEY``). After a crash or an unanswered create, the
item is ``uncertain``; on resume it is looked for, as the same user and inside the same budgets:

- a comment: the issue's comments with ``expand=properties``, page by page;
- an issue: ``search/jql`` with ``issue.property[forge-runner.item].item = "<key>"``;
- a worklog: the issue's worklogs with ``expand=properties``, page by page.

``Found`` means it exists (the item is done, with what was created); ``Missing`` means it
surely does not (it may be sent); ``Unknown`` means the look-up itself failed or the action
can't be looked up (a raw POST, a Python action): the item stays uncertain for a person.

Search is eventually consistent ("Recent updates might not be immediately visible", says the
spec of ``search/jql``), where a list of an issue's comments or worklogs is read from the issue
itself. So an issue not found by search is ``Missing(by_search=True)``, and ``too_early`` says
how long to wait before that is sure: an issue created moments ago may not be indexed yet.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from runner.actions import ITEM_PROPERTY_KEY
from runner.config.configfile import SiteConfig
from runner.jira.client import JiraRequest
from runner.jira.executor import CallResult, Done
from runner.job.templates import path_segment

API = "/rest/api/3"
PAGE = 100
MAX_PAGES = 50  # 5,000 comments or worklogs on one issue: past that, say Unknown


@dataclass(frozen=True)
class Found:
    result: Mapping[str, Any]


@dataclass(frozen=True)
class Missing:
    # Not found by search, which lags behind writes: sure only once the create is old enough.
    by_search: bool = False


@dataclass(frozen=True)
class Unknown:
    reason: str


Verdict = Found | Missing | Unknown


class Sender(Protocol):
    async def __call__(self, request: JiraRequest) -> CallResult: ...


def _carries(entity: Mapping[str, Any], item_key: str) -> bool:
    for prop in entity.get("properties") or ():
        if not isinstance(prop, Mapping) or prop.get("key") != ITEM_PROPERTY_KEY:
            continue
        value = prop.get("value")
        if isinstance(value, Mapping) and value.get("item") == item_key:
            return True
    return False


def too_early(verdict: Verdict, started_at: float | None, now: float, settle_s: float) -> float:
    """Seconds to wait before ``verdict`` can be trusted as missing; 0 when it can now.

    ``started_at`` is when the item was last journaled (its start, or later): its create left
    no earlier, so search has had at least ``now - started_at`` seconds to index it. Unknown
    (None) counts as long ago: there is nothing to wait for.
    """
    if not isinstance(verdict, Missing) or not verdict.by_search or started_at is None:
        return 0.0
    return max(0.0, started_at + settle_s - now)


def _jql_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


async def find_created(
    send: Sender, site: SiteConfig, creates: str | None, request: JiraRequest, item_key: str
) -> Verdict:
    """Look for the entity ``request`` would have created for ``item_key``."""
    del site  # the sender is bound to the site and user already
    if creates == "issue":
        return await _find_issue(send, item_key)
    if creates in ("comment", "worklog") and request.issue:
        return await _find_in_list(send, creates, request.issue, item_key)
    return Unknown("no way to look this create up")


async def _find_issue(send: Sender, item_key: str) -> Verdict:
    jql = f"issue.property[{ITEM_PROPERTY_KEY}].item = {_jql_string(item_key)}"
    answer = await send(
        JiraRequest(
            "GET",
            f"{API}/search/jql",
            f"{API}/search/jql",
            query={"jql": jql, "fields": "summary", "maxResults": "2"},
            cost=2,
        )
    )
    if not isinstance(answer, Done) or not isinstance(answer.response.body, Mapping):
        return Unknown(f"search failed: {getattr(answer, 'reason', 'unreadable answer')}")
    issues = answer.response.body.get("issues") or []
    if not issues:
        return Missing(by_search=True)
    first = issues[0]
    return Found({"id": str(first.get("id", "")), "key": str(first.get("key", "")),
                  **_self_link(first)})


async def _find_in_list(send: Sender, kind: str, issue: str, item_key: str) -> Verdict:
    plural = "comments" if kind == "comment" else "worklogs"
    path = f"{API}/issue/{path_segment(issue)}/{kind}"
    template = f"{API}/issue/{{issueIdOrKey}}/{kind}"
    start = 0
    for _ in range(MAX_PAGES):
        answer = await send(
            JiraRequest(
                "GET",
                path,
                template,
                query={"expand": "properties", "startAt": str(start), "maxResults": str(PAGE)},
                cost=2,
            )
        )
        if not isinstance(answer, Done) or not isinstance(answer.response.body, Mapping):
            return Unknown(f"listing {plural} failed: {getattr(answer, 'reason', 'unreadable')}")
        body = answer.response.body
        entities = body.get(plural) or []
        for entity in entities:
            if isinstance(entity, Mapping) and _carries(entity, item_key):
                return Found({"id": str(entity.get("id", "")), **_self_link(entity)})
        start += len(entities)
        total = body.get("total")
        if not entities or (isinstance(total, int) and start >= total):
            return Missing()
    return Unknown(f"more than {MAX_PAGES * PAGE} {plural} on {issue}")


def _self_link(entity: Mapping[str, Any]) -> dict[str, str]:
    """The entity's REST URL when Jira gave one: what a create found again journals, as a sent
    one does."""
    link = entity.get("self")
    return {"self": link} if isinstance(link, str) else {}
