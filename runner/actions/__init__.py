"""Jira actions: what one ``[[actions]]`` entry of a job sends for one row.

``build_action`` turns an entry into an ``Action`` (a built-in or a raw ``request``; each
renders a ``JiraRequest`` per row) or a ``PythonAction`` (an async callable given a Jira client
bound to the row's user). The built-ins and their parameters are documented in jobs/README.md.
"""

from __future__ import annotations

from pathlib import Path

from runner.actions.base import (
    ITEM_PROPERTY_KEY,
    Action,
    RenderError,
    item_property,
)
from runner.actions.builtins import (
    CommentAdd,
    IssueAssign,
    IssueCreate,
    IssueEdit,
    IssuePropertySet,
    IssueWatch,
    Myself,
    UserPropertySet,
    WorklogAdd,
)
from runner.actions.params import Params
from runner.actions.raw import PythonAction, RequestAction, load_python_action
from runner.actions.transition import IssueTransition
from runner.config.tables import Table

BUILTINS = {
    cls.name: cls
    for cls in (
        Myself,
        CommentAdd,
        IssueCreate,
        IssueEdit,
        IssueTransition,
        IssueAssign,
        IssueWatch,
        IssuePropertySet,
        UserPropertySet,
        WorklogAdd,
        RequestAction,
    )
}

__all__ = [
    "BUILTINS",
    "ITEM_PROPERTY_KEY",
    "Action",
    "PythonAction",
    "RenderError",
    "build_action",
    "item_property",
]


def build_action(
    index: int, t: Table, base_dir: Path, columns: frozenset[str] | None = None
) -> Action | PythonAction:
    """The action of one ``[[actions]]`` table (at ``actions[index]``); errors name its keys.
    With ``columns``, every placeholder must name one of them."""
    if "python" in t:
        if "type" in t:
            raise t.error("type", "either type or python, not both", "both")
        return load_python_action(index, t, base_dir)
    known = ", ".join(BUILTINS)
    kind = t.string("type", expected=f"one of {known}, or python = \"module:function\"")
    cls = BUILTINS.get(kind)
    if cls is None:
        raise t.error("type", f"one of {known}", repr(kind))
    action: Action = cls.parse(index, Params(t, columns))
    t.done()
    return action
