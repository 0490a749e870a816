"""What the runner's parts tell the outside world while they work: one typed event per fact.

Minting, Jira calls, the engine and the Forge Remote backend report what happens (a mint, a 429,
a pause, an item's end) as an ``Event``: a frozen dataclass defined here and nowhere else. A part
emits each fact once, through an ``Emitter``: the observers (progress display, run statistics,
the report, a doctor) get the object, and the log gets the same object rendered as one line,
``runner.<name>`` with the dataclass's fields, at the level its class chooses. Parts never import
the display, and the display never reaches into the parts; consumers match on the class.

Fields are plain values and never hold a token (design principle 6); the log still redacts.
Fields after the first few exist for the log line (request ids, waits) and may be None.

The catalogue, by name (class):
    mint.ok              MintOk              environment, site, account
    mint.rate_limited    MintRateLimited     bucket, until (POSIX), shape (retry_after|reset|
                                             graphql|backoff)
    mint.user_refused    MintUserRefused     environment, site, account, reason
    mint.context_refused MintContextRefused  environment, aris (tuple), message
    mint.retry           MintRetry           environment, reason, attempt
    system_token.waiting SystemTokenWaiting  environment, reason
    system_token.ok      SystemTokenOk       environment, expires_at
    jira.call            JiraCall            site, method, template, status
    jira.rate_limited    JiraRateLimited     site, scope (str), reason, until
    jira.retry           JiraRetry           site, template, reason, attempt
    pause                Pause               scope (str), reason, until (any budget holding back)
    resume               Resume              scope (str)
    item.done / .failed / .skipped / .blocked / .uncertain
                         ItemDone, ItemFailed, ItemSkipped, ItemBlocked, ItemUncertain
                                             site, account, row, action (+ reason unless done)
    run.finished         RunFinished         run, state
    remote.trigger.duplicate / .overlap / .accepted
                         TriggerDuplicate, TriggerOverlap, TriggerAccepted    route, site
    remote.run.crashed / .already_done / .locked / .started / .resumed / .finished /
    .template_changed    RemoteRunCrashed, RemoteRunAlreadyDone, RemoteRunLocked,
                         RemoteRunStarted, RemoteRunResumed, RemoteRunFinished,
                         RemoteRunTemplateChanged                             job, run, ...
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import structlog

DEBUG, INFO, WARNING, ERROR = logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """A fact one part reports. ``name`` is stable and dotted; ``level`` is its log line's."""

    name: ClassVar[str] = ""
    level: ClassVar[int] = INFO
    # For facts reported from an ``except`` block whose traceback belongs in the log.
    traceback: ClassVar[bool] = False

    def fields(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


# -- minting ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class MintOk(Event):
    name: ClassVar[str] = "mint.ok"
    environment: str
    site: str
    account: str
    ttl_s: float | None = None
    request_id: str | None = None
    trace_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MintRateLimited(Event):
    name: ClassVar[str] = "mint.rate_limited"
    level: ClassVar[int] = WARNING
    bucket: str
    until: float
    shape: str
    environment: str | None = None
    retry_after_s: float | None = None
    reset_at: float | None = None
    request_id: str | None = None
    trace_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MintUserRefused(Event):
    name: ClassVar[str] = "mint.user_refused"
    level: ClassVar[int] = WARNING
    environment: str
    site: str
    account: str
    reason: str
    request_id: str | None = None
    trace_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MintContextRefused(Event):
    name: ClassVar[str] = "mint.context_refused"
    level: ClassVar[int] = ERROR
    environment: str
    aris: tuple[str, ...]
    message: str
    site: str | None = None
    request_id: str | None = None
    trace_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MintRetry(Event):
    name: ClassVar[str] = "mint.retry"
    level: ClassVar[int] = WARNING
    environment: str
    reason: str
    attempt: int
    site: str | None = None
    account: str | None = None
    delay_s: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SystemTokenWaiting(Event):
    name: ClassVar[str] = "system_token.waiting"
    level: ClassVar[int] = WARNING
    environment: str
    reason: str
    waited_s: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SystemTokenOk(Event):
    name: ClassVar[str] = "system_token.ok"
    environment: str
    expires_at: float | None
    source: str | None = None


# -- Jira calls and budgets ------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class JiraCall(Event):
    name: ClassVar[str] = "jira.call"
    level: ClassVar[int] = DEBUG  # one per request: the log would drown in them
    site: str
    method: str
    template: str
    status: int


@dataclass(frozen=True, slots=True, kw_only=True)
class JiraRateLimited(Event):
    name: ClassVar[str] = "jira.rate_limited"
    site: str
    scope: str
    reason: str | None
    until: float | None
    method: str | None = None
    template: str | None = None
    retry_after_s: float | None = None
    reset_at: float | None = None
    wait_s: float | None = None
    deferrals: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class JiraRetry(Event):
    name: ClassVar[str] = "jira.retry"
    site: str
    template: str
    reason: str
    attempt: int
    method: str | None = None
    wait_s: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Pause(Event):
    name: ClassVar[str] = "pause"
    scope: str
    reason: str
    until: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Resume(Event):
    name: ClassVar[str] = "resume"
    scope: str


# -- items and runs --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemEvent(Event):
    """An item's end; ``state`` is the journal's word for it."""

    state: ClassVar[str] = ""
    site: str
    account: str
    row: str
    action: str
    reason: str | None = None


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
    detail: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemSkipped(ItemEvent):
    name: ClassVar[str] = "item.skipped"
    # Not done is a failure to whoever alerts on levels, whatever the cause.
    level: ClassVar[int] = WARNING
    state: ClassVar[str] = "skipped"


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
class RunFinished(Event):
    name: ClassVar[str] = "run.finished"
    run: str
    state: str


# -- the Forge Remote backend's runs (runner.remote.triggers) --------------------------------


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


# -- observing and emitting ------------------------------------------------------------------


class Observer(Protocol):
    # TEMPORARY: ``str`` and ``**fields`` admit the old ``event(name, **fields)`` calls of the
    # parts not converted yet (runner.events_legacy); implementations turn them into an Event
    # with ``as_event`` first. Once every part emits Events, this is ``event(self, ev: Event)``.
    def event(self, ev: Event | str, /, **fields: Any) -> None: ...


class NullObserver:
    """Ignores every event."""

    def event(self, ev: Event | str, /, **fields: Any) -> None:
        return None


class FanOut:
    """Passes every event to each of several observers."""

    def __init__(self, *observers: Observer) -> None:
        self._observers = observers

    def event(self, ev: Event | str, /, **fields: Any) -> None:
        for observer in self._observers:
            observer.event(ev, **fields)


_log = structlog.get_logger("runner.events")


def log_event(ev: Event) -> None:
    """Write ``ev`` as its log line: ``runner.<name>`` with its fields, at its class's level."""
    if ev.traceback:
        _log.log(ev.level, f"runner.{ev.name}", exc_info=True, **ev.fields())
    else:
        _log.log(ev.level, f"runner.{ev.name}", **ev.fields())


class Emitter:
    """The one way a part reports a fact: to its observer, then to the log."""

    __slots__ = ("observer",)

    def __init__(self, observer: Observer | None = None) -> None:
        self.observer: Observer = observer or NullObserver()

    def __call__(self, ev: Event) -> None:
        self.observer.event(ev)
        log_event(ev)
