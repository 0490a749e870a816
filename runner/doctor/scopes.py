"""The OAuth scopes each Jira operation needs, and so the scopes a job's actions need.

Derived from Jira's published OpenAPI spec (``../shared/specs/jira-platform-openapi.json``):
every operation lists its scopes under ``security`` (``OAuth2``) and, in more detail, under
``x-atlassian-oauth2-scopes``, which holds a *classic* set (``state: Current``, e.g.
``write:jira-work``) and a *granular* set (``state: Beta``, e.g. ``write:comment:jira`` plus the
reads its answer implies). The table keeps the classic scopes: they are the ones ``security``
names, the spec marks them current and the granular ones beta, and one classic scope covers
every operation of its kind, so a manifest stays a few lines long and does not change each time
a job adds an action. The table is copied here so that nothing at run time needs the spec; a
test checks every entry against the real spec.

The table covers the built-in actions' operations and every endpoint a raw ``request`` action
recognises (``runner.actions.raw.KNOWN_TEMPLATES``), for each method the spec defines there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from runner.actions import Action, PythonAction
from runner.actions.base import API
from runner.actions.raw import RequestAction

Operation = tuple[str, str]  # (method, the spec's path template)

# method, path template below /rest/api/3, classic scopes (space-separated).
_TABLE = """
POST   /issue                                                              write:jira-work
GET    /issue/{issueIdOrKey}                                               read:jira-work
PUT    /issue/{issueIdOrKey}                                               write:jira-work
DELETE /issue/{issueIdOrKey}                                               write:jira-work
PUT    /issue/{issueIdOrKey}/assignee                                      write:jira-work
GET    /issue/{issueIdOrKey}/changelog                                     read:jira-work
GET    /issue/{issueIdOrKey}/comment                                       read:jira-work
POST   /issue/{issueIdOrKey}/comment                                       write:jira-work
GET    /issue/{issueIdOrKey}/comment/{id}                                  read:jira-work
PUT    /issue/{issueIdOrKey}/comment/{id}                                  write:jira-work
DELETE /issue/{issueIdOrKey}/comment/{id}                                  write:jira-work
GET    /issue/{issueIdOrKey}/editmeta                                      read:jira-work
POST   /issue/{issueIdOrKey}/notify                                        write:jira-work
GET    /issue/{issueIdOrKey}/properties                                    read:jira-work
GET    /issue/{issueIdOrKey}/properties/{propertyKey}                      read:jira-work
PUT    /issue/{issueIdOrKey}/properties/{propertyKey}                      write:jira-work
DELETE /issue/{issueIdOrKey}/properties/{propertyKey}                      write:jira-work
GET    /issue/{issueIdOrKey}/remotelink                                    read:jira-work
POST   /issue/{issueIdOrKey}/remotelink                                    write:jira-work
DELETE /issue/{issueIdOrKey}/remotelink                                    write:jira-work
GET    /issue/{issueIdOrKey}/remotelink/{linkId}                           read:jira-work
PUT    /issue/{issueIdOrKey}/remotelink/{linkId}                           write:jira-work
DELETE /issue/{issueIdOrKey}/remotelink/{linkId}                           write:jira-work
GET    /issue/{issueIdOrKey}/transitions                                   read:jira-work
POST   /issue/{issueIdOrKey}/transitions                                   write:jira-work
GET    /issue/{issueIdOrKey}/votes                                         read:jira-work
POST   /issue/{issueIdOrKey}/votes                                         write:jira-work
DELETE /issue/{issueIdOrKey}/votes                                         write:jira-work
GET    /issue/{issueIdOrKey}/watchers                                      read:jira-work
POST   /issue/{issueIdOrKey}/watchers                                      write:jira-work
DELETE /issue/{issueIdOrKey}/watchers                                      write:jira-work
GET    /issue/{issueIdOrKey}/worklog                                       read:jira-work
POST   /issue/{issueIdOrKey}/worklog                                       write:jira-work
DELETE /issue/{issueIdOrKey}/worklog                                       write:jira-work
POST   /issue/{issueIdOrKey}/worklog/move                                  write:jira-work
GET    /issue/{issueIdOrKey}/worklog/{id}                                  read:jira-work
PUT    /issue/{issueIdOrKey}/worklog/{id}                                  write:jira-work
DELETE /issue/{issueIdOrKey}/worklog/{id}                                  write:jira-work
GET    /issue/{issueIdOrKey}/worklog/{worklogId}/properties/{propertyKey}  read:jira-work
PUT    /issue/{issueIdOrKey}/worklog/{worklogId}/properties/{propertyKey}  write:jira-work
DELETE /issue/{issueIdOrKey}/worklog/{worklogId}/properties/{propertyKey}  write:jira-work
GET    /comment/{commentId}/properties/{propertyKey}                       read:jira-work
PUT    /comment/{commentId}/properties/{propertyKey}                       write:jira-work
DELETE /comment/{commentId}/properties/{propertyKey}                       write:jira-work
POST   /issueLink                                                          write:jira-work
GET    /myself                                                             read:jira-user
GET    /search/jql                                                         read:jira-work
POST   /search/jql                                                         read:jira-work
GET    /user                                                               read:jira-user
POST   /user                                                               manage:jira-configuration
DELETE /user                                                               manage:jira-configuration
GET    /user/properties/{propertyKey}                                      read:jira-user
PUT    /user/properties/{propertyKey}                                      write:jira-work
DELETE /user/properties/{propertyKey}                                      write:jira-work
"""


def _parse(table: str) -> dict[Operation, tuple[str, ...]]:
    scopes: dict[Operation, tuple[str, ...]] = {}
    for line in table.strip().splitlines():
        method, path, *names = line.split()
        scopes[(method, API + path)] = tuple(names)
    return scopes


# (method, path template) -> the classic OAuth scopes Jira's spec lists for that operation.
OPERATION_SCOPES: Mapping[Operation, tuple[str, ...]] = _parse(_TABLE)

_ISSUE = f"{API}/issue/{{issueIdOrKey}}"
_TRANSITIONS = f"{_ISSUE}/transitions"

# The operations each built-in action sends. ``issue.transition`` by name reads the issue's
# transitions first, so it also needs the GET (see ``operations_of``).
BUILTIN_OPERATIONS: Mapping[str, tuple[Operation, ...]] = {
    "myself": (("GET", f"{API}/myself"),),
    "comment.add": (("POST", f"{_ISSUE}/comment"),),
    "issue.create": (("POST", f"{API}/issue"),),
    "issue.edit": (("PUT", _ISSUE),),
    "issue.transition": (("POST", _TRANSITIONS),),
    "issue.assign": (("PUT", f"{_ISSUE}/assignee"),),
    "issue.watch": (("POST", f"{_ISSUE}/watchers"),),
    "issue.property.set": (("PUT", f"{_ISSUE}/properties/{{propertyKey}}"),),
    "user.property.set": (("PUT", f"{API}/user/properties/{{propertyKey}}"),),
    "worklog.add": (("POST", f"{_ISSUE}/worklog"),),
}


def operations_of(action: Action | PythonAction) -> tuple[Operation, ...] | None:
    """The operations ``action`` sends; None when they can't be known (a Python action)."""
    if isinstance(action, PythonAction):
        return None
    if isinstance(action, RequestAction):
        return ((action.method, action.template),)
    ops = BUILTIN_OPERATIONS[action.name]
    if action.name == "issue.transition" and getattr(action, "transition", None) is not None:
        return (("GET", _TRANSITIONS), *ops)
    return ops


def describe_action(action: Action | PythonAction) -> str:
    """``actions[2] issue.transition``, or ``actions[3] python mod:func``."""
    if isinstance(action, PythonAction):
        return f"actions[{action.index}] python {action.ref}"
    return f"actions[{action.index}] {action.name}"


@dataclass(frozen=True)
class Undetermined:
    """An action whose scopes the table can't give, and why."""

    action: str
    reason: str


@dataclass(frozen=True)
class ScopeNeeds:
    """The scopes a job needs: each scope with the actions that need it, in first-use order;
    and the actions whose scopes could not be determined."""

    scopes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    undetermined: tuple[Undetermined, ...] = ()


def scopes_needed(actions: Sequence[Action | PythonAction]) -> ScopeNeeds:
    """What ``actions`` need, from the table."""
    needs: dict[str, list[str]] = {}
    unknown: list[Undetermined] = []
    for action in actions:
        what = describe_action(action)
        ops = operations_of(action)
        if ops is None:
            unknown.append(Undetermined(what, "a Python action may call any operation"))
            continue
        for method, template in ops:
            scopes = OPERATION_SCOPES.get((method, template))
            if scopes is None:
                unknown.append(Undetermined(
                    what, f"{method} {template} is not an operation forge-runner knows"))
                continue
            for scope in scopes:
                users = needs.setdefault(scope, [])
                if what not in users:
                    users.append(what)
    return ScopeNeeds({s: tuple(a) for s, a in needs.items()}, tuple(unknown))
