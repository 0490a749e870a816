"""Items' ends and runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from runner.events.base import DEBUG, ERROR, WARNING, Event


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemEvent(Event):
    """An item's end; ``state`` is the journal's word for it."""

    state: ClassVar[str] = ""
    site: str
    account: str
    row: str
    action: str
    # A stable code (runner.journal.reasons); the item's particulars are ``detail``.
    reason: str | None = None
    detail: str | None = None
    # What the item was for: ``POST /rest/api/3/issue/MIG-9/comment``.
    target: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemDone(ItemEvent):
    name: ClassVar[str] = "item.done"
    level: ClassVar[int] = DEBUG  # one per item
    state: ClassVar[str] = "done"


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemFailed(ItemEvent):
    name: ClassVar[str] = "item.failed"
    level: ClassVar[int] = WARNING
    state: ClassVar[str] = "failed"


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemSkipped(ItemEvent):
    name: ClassVar[str] = "item.skipped"
    state: ClassVar[str] = "skipped"
    # Not done is a failure to whoever alerts on levels, whatever the cause.
    level: ClassVar[int] = WARNING


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemBlocked(ItemEvent):
    name: ClassVar[str] = "item.blocked"
    level: ClassVar[int] = WARNING
    state: ClassVar[str] = "blocked"


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemUncertain(ItemEvent):
    name: ClassVar[str] = "item.uncertain"
    level: ClassVar[int] = WARNING
    state: ClassVar[str] = "uncertain"


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemRecovered(Event):
    """A create left started or uncertain, looked up at a resume: ``found`` in Jira (done, not
    sent again), or surely missing (sent again)."""

    name: ClassVar[str] = "item.recovered"
    row: str
    action: str
    found: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class RunFinished(Event):
    name: ClassVar[str] = "run.finished"
    run: str
    state: str




@dataclass(frozen=True, slots=True, kw_only=True)
class JournalFailed(Event):
    """An item's ``done`` could not be journaled: nothing more is sent, the run stops."""

    name: ClassVar[str] = "journal.failed"
    level: ClassVar[int] = ERROR
    row: str
    action: str
    error: str
