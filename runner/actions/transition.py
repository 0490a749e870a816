"""``issue.transition``: by ``transition_id``, or by ``transition`` name.

By name, the ID is not known until the issue's transitions are read (a transition's name is
read-only in Jira's request schema, so it can't be sent). The rendered request then carries a
``Resolve``: the executor sends ``GET .../transitions`` first (1 + 1 points, as the same user,
inside the same budgets) and sends what ``complete`` builds from the answer. So a transition by
name costs one extra read per row; ``forge-runner plan`` counts it.

Transitions are treated as idempotent: sending one again after an unknown outcome leaves the
issue where the first one put it, or fails with Jira's 400 if the workflow no longer offers it.
A job may declare ``idempotent = false`` to have an unknown outcome reported instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runner.actions.base import (
    API,
    CORE_OBJECT_COST,
    REQUEST_COST,
    WRITE_COST,
    Templated,
    fill,
    fill_segment,
    issue_path,
)
from runner.actions.params import Params
from runner.errors import ActionError
from runner.jira.client import JiraRequest, Resolve
from runner.job.templates import JsonTemplate, Template

if TYPE_CHECKING:
    from runner.job.sources import Row

TEMPLATE = f"{API}/issue/{{issueIdOrKey}}/transitions"
READ_COST = REQUEST_COST + CORE_OBJECT_COST


def find_transition(answer: Any, name: str) -> str | None:
    """The ID of the transition called ``name`` in a ``GET .../transitions`` answer: an exact
    match first, else the only case-insensitive one."""
    items = answer.get("transitions") if isinstance(answer, dict) else None
    if not isinstance(items, list):
        return None
    named = [t for t in items if isinstance(t, dict) and isinstance(t.get("name"), str)]
    exact = [t for t in named if t["name"] == name]
    folded = [t for t in named if t["name"].casefold() == name.casefold()]
    chosen = exact[:1] or (folded if len(folded) == 1 else [])
    return str(chosen[0]["id"]) if chosen and "id" in chosen[0] else None


@dataclass(frozen=True)
class IssueTransition(Templated):
    index: int
    issue: Template
    transition_id: Template | None
    transition: Template | None
    fields: JsonTemplate | None
    idempotent: bool = True
    name: str = "issue.transition"
    creates: str | None = None

    @classmethod
    def parse(cls, index: int, p: Params) -> IssueTransition:
        if ("transition_id" in p.t) == ("transition" in p.t):
            found = "both" if "transition" in p.t else "neither"
            raise p.t.error("transition_id", "exactly one of transition_id or transition (a name)",
                            found)
        by_id = p.template("transition_id") if "transition_id" in p.t else None
        by_name = p.template("transition") if "transition" in p.t else None
        return cls(index, p.template("issue"), by_id, by_name,
                   p.json_table("fields", required=False), p.t.boolean("idempotent", True))


    def render(self, row: Row, item_key: str) -> JiraRequest:
        issue, _ = fill_segment("issue", self.issue, row.fields)
        extra = {"fields": self.fields.render(row.fields)} if self.fields is not None else {}
        path = issue_path(issue, "/transitions")

        def request(transition_id: str) -> JiraRequest:
            body = {"transition": {"id": transition_id}, **extra}
            return self.request("POST", path, TEMPLATE, json=body, cost=WRITE_COST, issue=issue)

        if self.transition_id is not None:
            return request(fill("transition_id", self.transition_id, row.fields))
        assert self.transition is not None
        wanted = fill("transition", self.transition, row.fields)

        def complete(answer: Any) -> JiraRequest:
            found = find_transition(answer, wanted)
            if found is None:
                raise ActionError(self.name, f"issue {issue} offers no transition named "
                                  f"{wanted!r} to this user now")
            return request(found)

        read = JiraRequest("GET", path, TEMPLATE, cost=READ_COST)
        return self.request("POST", path, TEMPLATE, cost=WRITE_COST, issue=issue,
                            resolve=Resolve(read, complete))
