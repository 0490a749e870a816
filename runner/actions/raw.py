"""The escape hatches: a raw ``request``, and ``python = "package.module:function"``.

A raw request names its method and path; the path's spec template (the burst budget's endpoint
key) is found among the common Jira endpoints below, or given as ``template``, or else is the
job's own path text. A raw POST declared ``idempotent = false`` to one of the create endpoints
(issue, comment, worklog) carries the ``forge-runner.item`` property like the built-in creates.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.actions.base import (
    API,
    CORE_OBJECT_COST,
    REQUEST_COST,
    WRITE_COST,
    RenderError,
    Templated,
    fill,
    item_property,
)
from runner.actions.params import Params
from runner.config.tables import Table, describe
from runner.jira.client import JiraRequest
from runner.job.templates import (
    JsonTemplate,
    Template,
    TemplateError,
    dot_segment_problem,
    path_segment,
)

if TYPE_CHECKING:
    from runner.job.sources import Row

METHODS = ("GET", "POST", "PUT", "DELETE")
ISSUE = f"{API}/issue/{{issueIdOrKey}}"
# Endpoints a job is likely to call raw, as the spec names them (tests check each is in it).
KNOWN_TEMPLATES = (
    f"{API}/issue",
    ISSUE,
    f"{ISSUE}/assignee",
    f"{ISSUE}/changelog",
    f"{ISSUE}/comment",
    f"{ISSUE}/comment/{{id}}",
    f"{ISSUE}/editmeta",
    f"{ISSUE}/notify",
    f"{ISSUE}/properties",
    f"{ISSUE}/properties/{{propertyKey}}",
    f"{ISSUE}/remotelink",
    f"{ISSUE}/remotelink/{{linkId}}",
    f"{ISSUE}/transitions",
    f"{ISSUE}/votes",
    f"{ISSUE}/watchers",
    f"{ISSUE}/worklog",
    f"{ISSUE}/worklog/move",
    f"{ISSUE}/worklog/{{id}}",
    f"{ISSUE}/worklog/{{worklogId}}/properties/{{propertyKey}}",
    f"{API}/comment/{{commentId}}/properties/{{propertyKey}}",
    f"{API}/issueLink",
    f"{API}/myself",
    f"{API}/search/jql",
    f"{API}/user",
    f"{API}/user/properties/{{propertyKey}}",
)
CREATES = {f"{API}/issue": "issue", f"{ISSUE}/comment": "comment", f"{ISSUE}/worklog": "worklog"}
_PATH = re.compile(r"/[^\s?#]*")


def match_template(path: str) -> tuple[str, int | None]:
    """The spec template of a job's path text, and the index of its issue segment if any.

    A literal segment must match a literal one; a segment with placeholders matches only a
    template parameter. The template with the most literal segments wins (``worklog/move``
    over ``worklog/{id}``).
    """
    segments = path.split("/")
    best: tuple[int, str] | None = None
    for known in KNOWN_TEMPLATES:
        parts = known.split("/")
        if len(parts) != len(segments):
            continue
        score = 0
        for seg, part in zip(segments, parts, strict=True):
            is_param = part.startswith("{")
            if "{" in seg.replace("{{", "") and not is_param:
                break
            if not is_param and seg != part:
                break
            score += not is_param
        else:
            if best is None or score > best[0]:
                best = (score, known)
    if best is None:
        return path, None
    parts = best[1].split("/")
    issue_at = parts.index("{issueIdOrKey}") if "{issueIdOrKey}" in parts else None
    return best[1], issue_at


@dataclass(frozen=True)
class RequestAction(Templated):
    index: int
    method: str
    path: tuple[Template, ...]  # one template per path segment
    query: Mapping[str, Template]
    body: JsonTemplate | None
    idempotent: bool
    cost: int
    template: str
    issue: Template | None
    creates: str | None
    name: str = "request"

    @classmethod
    def parse(cls, index: int, p: Params) -> RequestAction:
        t = p.t
        method = t.string("method", expected="GET, POST, PUT or DELETE").upper()
        if method not in METHODS:
            raise t.error("method", "GET, POST, PUT or DELETE", describe(t.data["method"]))
        text: str = t.string("path", expected="a path such as /rest/api/3/issue/{issue}")
        if not _PATH.fullmatch(text) or "://" in text:
            raise t.error("path", "a path relative to the site's API base URL, starting with / "
                          "(query parameters go in query)", describe(text))
        segments = tuple(p.template_text("path", s) for s in text.split("/"))
        query = {str(k): p.template_text(f"query.{k}", _query_text(t, k, v))
                 for k, v in t.table("query").data.items()}
        body = p.json_value("json") if "json" in t else None
        if body is not None and method == "GET":
            raise t.error("json", "no body on a GET", "a body")
        idempotent = t.boolean("idempotent", method != "POST")
        default_cost = REQUEST_COST + CORE_OBJECT_COST if method == "GET" else WRITE_COST
        cost = t.integer("cost", default_cost, minimum=1)
        inferred, issue_at = match_template(text)
        template = t.string("template", inferred, expected="the spec's path template")
        issue = p.template("issue") if "issue" in t else None
        if issue is None and issue_at is not None and method != "GET":
            issue = segments[issue_at]
        creates = CREATES.get(template) if method == "POST" and not idempotent else None
        if creates is not None and not isinstance(t.data.get("json"), dict):
            raise t.error("json", f"a table (the {creates} to create)", "no table")
        return cls(index, method, segments, query, body, idempotent, cost, template,
                   issue if method != "GET" else None, creates)


    def render(self, row: Row, item_key: str) -> JiraRequest:
        f = row.fields
        try:
            path = "/".join(_segment(s, f) for s in self.path)
            query = {k: v.render(f) for k, v in self.query.items()}
            body = self.body.render(f) if self.body is not None else None
        except TemplateError as exc:
            raise RenderError("path", str(exc)) from None
        if "//" in path:
            raise RenderError("path", f"expected no empty path segment, found {path!r}")
        if self.creates is not None and isinstance(body, dict):
            props = body.get("properties")
            body["properties"] = [*(props if isinstance(props, list) else []),
                                  item_property(item_key)]
        issue = fill("issue", self.issue, f) if self.issue is not None else None
        return self.request(self.method, path, self.template, query=query, json=body,
                            cost=self.cost, issue=issue)


def _segment(template: Template, fields: Mapping[str, str]) -> str:
    """One path segment, filled in and percent-encoded; a row value may not make it a dot
    segment (``..`` would turn ``DELETE .../comment/{id}`` into ``DELETE .../issue/KEY/``)."""
    if template.placeholders:
        problem = dot_segment_problem(template.render(fields), template)
        if problem:
            raise RenderError("path", problem)
    return template.render(fields, path_segment)


def _query_text(t: Table, key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    raise t.make_error(f"{t.key('query')}.{key}", "a string, number or boolean", describe(value))


@dataclass(frozen=True)
class PythonAction(Templated):
    """``python = "package.module:function"``: ``await func(jira, row)``, where ``jira`` is a
    client bound to the row's user (``await jira.request(method, path, query=..., json=...)``).
    Not idempotent unless the job says so: the runner can't know what it does."""

    index: int
    ref: str
    func: Callable[[Any, Row], Awaitable[Any]] = field(repr=False, compare=False)
    idempotent: bool = False
    name: str = "python"
    creates: None = None



_REF = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*")


def load_python_action(index: int, t: Table, base_dir: Path) -> PythonAction:
    """Import the callable now, so a typo stops the job before anything is sent. The job's
    folder is searched first, so a job can ship its module beside it."""
    ref: str = t.string("python", expected="package.module:function")
    if not _REF.fullmatch(ref):
        raise t.error("python", "package.module:function", describe(ref))
    idempotent = t.boolean("idempotent", False)
    t.done()
    module_name, func_name = ref.split(":")
    sys.path.insert(0, str(base_dir))
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any import failure is the job's error to report
        raise t.error("python", f"an importable module {module_name!r}",
                      f"{type(exc).__name__}: {exc}") from None
    finally:
        sys.path.remove(str(base_dir))
    func = getattr(module, func_name, None)
    if func is None or not inspect.iscoroutinefunction(func):
        found = "nothing of that name" if func is None else describe(func)
        raise t.error("python", f"an async function ({ref} defined with async def)", found)
    return PythonAction(index, ref, func, idempotent)
