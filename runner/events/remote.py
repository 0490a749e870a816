"""The Forge Remote backend's runs (``runner.remote.triggers``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from runner.events.base import ERROR, WARNING, Event


@dataclass(frozen=True, slots=True, kw_only=True)
class TriggerDuplicate(Event):
    name: ClassVar[str] = "remote.trigger.duplicate"
    route: str
    site: str
    accepted_s_ago: float


@dataclass(frozen=True, slots=True, kw_only=True)
class TriggerOverlap(Event):
    name: ClassVar[str] = "remote.trigger.overlap"
    level: ClassVar[int] = WARNING
    route: str
    site: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TriggerAccepted(Event):
    name: ClassVar[str] = "remote.trigger.accepted"
    route: str
    site: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteRunCrashed(Event):
    name: ClassVar[str] = "remote.run.crashed"
    level: ClassVar[int] = ERROR
    traceback: ClassVar[bool] = True
    error: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteRunAlreadyDone(Event):
    name: ClassVar[str] = "remote.run.already_done"
    job: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteRunLocked(Event):
    name: ClassVar[str] = "remote.run.locked"
    level: ClassVar[int] = WARNING
    job: str
    holder: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteRunStarted(Event):
    name: ClassVar[str] = "remote.run.started"
    run: str
    job: str
    items: int
    site: str | None = None
    bound_s: float | None = None  # the plan's shortest possible duration


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteRunResumed(RemoteRunStarted):
    name: ClassVar[str] = "remote.run.resumed"


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteRunFinished(Event):
    name: ClassVar[str] = "remote.run.finished"
    run: str
    job: str
    state: str
    exit_code: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteRunTemplateChanged(Event):
    name: ClassVar[str] = "remote.run.template_changed"
    level: ClassVar[int] = WARNING
    job: str


