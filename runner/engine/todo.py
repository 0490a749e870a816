"""What the row worker is given and keeps of each item: the actions still to do, and what
Jira returned that matters later."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runner.actions import Action, PythonAction
from runner.journal.base import ItemState

# ``self`` too: the created thing's REST URL, which an export hands on (a migration's map).
RESULT_KEYS = ("id", "key", "self")


@dataclass(frozen=True)
class Todo:
    action: Action | PythonAction
    prior: ItemState  # its state in the journal before this run touched it
    # When the journal last recorded it (its start, for one a crash left ``started``).
    since: float | None = None


def result_of(body: Any) -> dict[str, Any] | None:
    """What Jira returned that matters later: the IDs and keys of what was created."""
    if isinstance(body, Mapping):
        kept = {k: body[k] for k in RESULT_KEYS if isinstance(body.get(k), str | int)}
        return kept or None
    return None


