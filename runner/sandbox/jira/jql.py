"""The slice of JQL the sandbox understands, and ``search/jql`` on top of it.

Clauses joined by AND, each ``field op value``: fields ``key``/``issuekey``/``id``, ``project``,
``status``, ``assignee``, ``issue.property[propKey].path.sub``; operators ``=``, ``!=``, ``in``,
``not in``; values bare, quoted, or a parenthesised list. ``ORDER BY`` is accepted and ignored
(results come in creation order). Anything else is a 400, as Jira gives for JQL it can't parse.

Search is eventually consistent, as Jira's spec says of ``search/jql`` ("Recent updates might
not be immediately visible"): an issue created through the API is found only once
``[sandbox] search_lag_s`` has passed (seeded issues are found from the start).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runner.sandbox.jira import render
from runner.sandbox.jira.base import Call, JiraError, Reply, Route
from runner.sandbox.jira.state import Issue, SiteState

_TOKEN = re.compile(
    r"""\s*(?:(?P<punct>[(),])|(?P<op>!=|=)|"(?P<dq>(?:[^"\\]|\\.)*)"|'(?P<sq>(?:[^'\\]|\\.)*)'"""
    r"""|(?P<word>[^\s(),=!"']+))"""
)
_PROPERTY = re.compile(r"^issue\.property\[(?P<key>[^\]]+)\](?P<path>(?:\.[^.\s]+)*)$", re.I)
_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_]*-\d+$")
MAX_RESULTS = 5000


@dataclass(frozen=True)
class _Tok:
    kind: str  # "punct" | "op" | "str" (quoted) | "word"
    text: str


@dataclass(frozen=True)
class Clause:
    field: str  # lower-case field name, or "issue.property[...]" as written
    negated: bool
    values: tuple[str, ...]


def _bad(detail: str) -> JiraError:
    return JiraError(400, (f"Error in the JQL Query: {detail}",))


def tokenize(text: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise _bad(f"the character '{text[pos:].strip()[:1]}' is not expected here.")
        pos = m.end()
        if m.group("punct"):
            tokens.append(_Tok("punct", m.group("punct")))
        elif m.group("op"):
            tokens.append(_Tok("op", m.group("op")))
        elif m.group("dq") is not None or m.group("sq") is not None:
            raw = m.group("dq") if m.group("dq") is not None else m.group("sq")
            tokens.append(_Tok("str", re.sub(r"\\(.)", r"\1", raw)))
        else:
            tokens.append(_Tok("word", m.group("word")))
    return tokens


def parse(text: str) -> list[Clause]:
    """The AND-ed clauses of ``text``; 400 for unsupported JQL or an unbounded query."""
    tokens = tokenize(text)
    clauses: list[Clause] = []
    i = 0

    def word(at: int) -> str:
        return tokens[at].text.lower() if at < len(tokens) and tokens[at].kind == "word" else ""

    while i < len(tokens):
        if word(i) == "order" and word(i + 1) == "by":
            break
        if clauses:
            if word(i) != "and":
                raise _bad(f"expecting AND or ORDER BY but got '{tokens[i].text}'.")
            i += 1
        if i + 2 > len(tokens) or tokens[i].kind != "word":
            raise _bad("expecting a field name.")
        field = _field(tokens[i].text)
        i += 1
        if tokens[i].kind == "op":
            negated, listed = tokens[i].text == "!=", False
            i += 1
        elif word(i) == "in":
            negated, listed = False, True
            i += 1
        elif word(i) == "not" and word(i + 1) == "in":
            negated, listed = True, True
            i += 2
        else:
            raise _bad(f"the operator '{tokens[i].text}' is not supported here.")
        values, i = _values(tokens, i, listed)
        clauses.append(Clause(field, negated, values))
    if not clauses:
        raise JiraError(
            400,
            ("Unbounded JQL queries are not allowed here. Please add a search restriction to "
             "your query.",),
        )
    return clauses


def _values(tokens: list[_Tok], i: int, listed: bool) -> tuple[tuple[str, ...], int]:
    def value(at: int) -> str:
        if at >= len(tokens) or tokens[at].kind not in ("str", "word"):
            raise _bad("expecting a value.")
        return tokens[at].text

    if not listed:
        return (value(i),), i + 1
    if i >= len(tokens) or tokens[i].text != "(":
        raise _bad("expecting '(' after IN.")
    out = [value(i + 1)]
    i += 2
    while i < len(tokens) and tokens[i].text == ",":
        out.append(value(i + 1))
        i += 2
    if i >= len(tokens) or tokens[i].text != ")":
        raise _bad("expecting ')' to close the list.")
    return tuple(out), i + 1


def _field(name: str) -> str:
    lowered = name.lower()
    if lowered in ("key", "issuekey", "id", "project", "status", "assignee"):
        return "key" if lowered == "issuekey" else lowered
    if _PROPERTY.match(name):
        return name
    raise _bad(f"Field '{name}' does not exist or you do not have permission to view it.")


def matcher(site: SiteState, clauses: list[Clause], caller: str) -> Callable[[Issue], bool]:
    """A predicate for the clauses; names an unknown issue key or project as Jira does."""
    tests = [_clause_test(site, c, caller) for c in clauses]
    return lambda issue: all(test(issue) for test in tests)


def _clause_test(site: SiteState, c: Clause, caller: str) -> Callable[[Issue], bool]:
    values: set[str]
    if c.field == "key":
        for v in c.values:
            if not _KEY.match(v) or site.find(v) is None:
                raise _bad(f"An issue with key '{v}' does not exist for field 'key'.")
        values = {v.upper() for v in c.values}

        def pick(issue: Issue) -> list[str]:
            return [issue.key]
    elif c.field == "id":
        values = set(c.values)

        def pick(issue: Issue) -> list[str]:
            return [issue.id]
    elif c.field == "project":
        known = site.projects()
        for v in c.values:
            if v.upper() not in known:
                raise _bad(f"The value '{v}' does not exist for the field 'project'.")
        values = {v.upper() for v in c.values}

        def pick(issue: Issue) -> list[str]:
            return [issue.project.upper()]
    elif c.field == "status":
        values = {v.lower() for v in c.values}

        def pick(issue: Issue) -> list[str]:
            return [issue.status.lower()]
    elif c.field == "assignee":
        values = {caller if v.lower() == "currentuser()" else v for v in c.values}
        values = {"" if v.lower() in ("empty", "null") else v for v in values}

        def pick(issue: Issue) -> list[str]:
            return [issue.assignee or ""]
    else:
        prop = _PROPERTY.match(c.field)
        assert prop is not None
        key, path = prop.group("key"), [p for p in prop.group("path").split(".") if p]
        values = set(c.values)

        def pick(issue: Issue) -> list[str]:
            return _property_texts(issue.properties.get(key), path)

    def test(issue: Issue) -> bool:
        hit = any(v in values for v in pick(issue))
        return hit != c.negated

    return test


def _property_texts(node: Any, path: list[str]) -> list[str]:
    """The values at ``path`` inside a property, as JQL compares them (arrays: each item)."""
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return []
        node = node[part]
    items = node if isinstance(node, list) else [node]
    texts = []
    for item in items:
        if isinstance(item, bool):
            texts.append("true" if item else "false")
        elif isinstance(item, int | float | str):
            texts.append(str(int(item)) if isinstance(item, float) and item.is_integer()
                         else str(item))
    return texts


def _token_for(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def _offset_of(token: str | None) -> int:
    if not token:
        return 0
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
        prefix, _, number = text.partition(":")
        if prefix == "offset" and number.isdigit():
            return int(number)
    except (ValueError, UnicodeDecodeError):
        pass
    raise JiraError(400, ("The nextPageToken is not valid.",))


def search(call: Call) -> Reply:
    if call.body is not None:  # POST: the same parameters, in the body
        body: dict[str, Any] = call.body
        jql, token = body.get("jql") or "", body.get("nextPageToken")
        size = body.get("maxResults", 50)
        wanted = [f.strip() for v in body.get("fields") or ["id"] for f in v.split(",")]
        props = body.get("properties")
    else:
        jql, token = call.query.get("jql") or "", call.query.get("nextPageToken")
        size = call.int_param("maxResults", 50)
        wanted = call.csv_param("fields") or ["id"]
        props = call.csv_param("properties")
    test = matcher(call.site, parse(jql), call.caller)
    found = [issue for issue in call.site.issues.values()
             if issue.indexed_at <= call.now and test(issue)]
    start, size = _offset_of(token), max(1, min(size, MAX_RESULTS))
    page = found[start : start + size]
    call.core_reads += len(page)
    out: dict[str, Any] = {"issues": [render.issue(call, i, wanted, props) for i in page]}
    more = start + size < len(found)
    if more:
        out["nextPageToken"] = _token_for(start + size)
    out["isLast"] = not more
    return Reply(200, out)


ROUTES = [
    Route("GET", "/search/jql", search),
    Route("POST", "/search/jql", search),
]
