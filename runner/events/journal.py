"""The journal's database going away and coming back (``runner.journal.postgres``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from runner.events.base import WARNING, Event


@dataclass(frozen=True, slots=True, kw_only=True)
class JournalWaiting(Event):
    """The journal's database can't be reached mid-run: writes wait (nothing is sent that
    was not journaled) until it is back, or until ``wait_s`` has passed."""

    name: ClassVar[str] = "journal.waiting"
    level: ClassVar[int] = WARNING
    journal: str  # the URL without its password
    reason: str
    wait_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class JournalReconnected(Event):
    name: ClassVar[str] = "journal.reconnected"
    level: ClassVar[int] = WARNING
    journal: str
    waited_s: float
