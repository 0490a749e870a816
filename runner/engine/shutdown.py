"""Stopping a run on a signal: the first SIGINT/SIGTERM drains, the second stops at once.

Draining means: no new row is started and no user's next action is started; requests already
sent finish and are journaled. A second signal cancels what is in flight (those items stay
``started`` in the journal and are checked on resume). The original handlers come back when the
run ends.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import structlog

log = structlog.get_logger("runner.shutdown")

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Shutdown:
    """What the engine asks: ``draining``? And what it hooks: ``on_drain``, ``on_force``."""

    def __init__(self) -> None:
        self.draining = False
        self.forced = False
        self.signal: int | None = None
        self._on_drain: list[Callable[[], None]] = []
        self._on_force: list[Callable[[], None]] = []

    def on_drain(self, callback: Callable[[], None]) -> None:
        self._on_drain.append(callback)
        if self.draining:
            callback()

    def on_force(self, callback: Callable[[], None]) -> None:
        self._on_force.append(callback)
        if self.forced:
            callback()

    def request(self, signum: int | None = None) -> None:
        """A stop was asked for (a signal, or code): drain first, force the second time."""
        if not self.draining:
            self.draining = True
            self.signal = signum
            log.warning("runner.shutdown.draining", signal=_name(signum))
            for callback in list(self._on_drain):
                callback()
            return
        if not self.forced:
            self.forced = True
            log.warning("runner.shutdown.forced", signal=_name(signum))
            for callback in list(self._on_force):
                callback()

    @contextmanager
    def installed(self) -> Iterator[Shutdown]:
        """Route SIGINT and SIGTERM here while the block runs; restore the old handlers after."""
        loop = asyncio.get_running_loop()
        previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
        for sig in SIGNALS:
            loop.add_signal_handler(sig, self.request, sig)
        try:
            yield self
        finally:
            for sig in SIGNALS:
                loop.remove_signal_handler(sig)
                signal.signal(sig, previous[sig])


def _name(signum: int | None) -> str:
    return signal.Signals(signum).name if signum is not None else "request"
