"""The event base class, observers and the emitter (the catalogue: ``runner.events``)."""

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


class Observer(Protocol):
    """What the display, the statistics, a doctor or a test hands the parts."""

    def event(self, ev: Event, /) -> None: ...


class NullObserver:
    """Ignores every event."""

    def event(self, ev: Event, /) -> None:
        return None


class FanOut:
    """Passes every event to each of several observers."""

    def __init__(self, *observers: Observer) -> None:
        self._observers = observers

    def event(self, ev: Event, /) -> None:
        for observer in self._observers:
            observer.event(ev)


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
