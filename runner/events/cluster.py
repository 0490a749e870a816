"""Lanes changing hands between workers (``runner.cluster.worker``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from runner.events.base import WARNING, Event


@dataclass(frozen=True, slots=True, kw_only=True)
class LaneTakenOver(Event):
    """This worker claimed a lane another worker held before (its lease lapsed, or it gave the
    lane back or was found gone): the grant's fence is above 1."""

    name: ClassVar[str] = "lane.taken_over"
    run: str
    site: str
    account: str
    fence: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LaneLeaseLost(Event):
    """This worker lost a lane it held: its lease ended before it could be renewed, or the
    database no longer counts it as this worker's. It sends nothing more in that lane."""

    name: ClassVar[str] = "lane.lost"
    level: ClassVar[int] = WARNING
    run: str
    site: str
    account: str
    fence: int
    why: str
