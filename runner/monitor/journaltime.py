"""Journal write latency: a journal that times its writes for the metrics, and is otherwise the
journal it wraps. Engines get it in place of the journal; nothing else changes."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

from prometheus_client import Histogram

from runner.journal import Journal

# The writes on an item's path; each is timed until it returns (durable).
TIMED = frozenset({"mark_started", "mark_done", "mark_failed", "mark_skipped", "mark_blocked",
                   "mark_uncertain", "claim", "set_total", "finish_run"})


class _TimedJournal:
    def __init__(self, journal: Journal, histogram: Histogram) -> None:
        self._journal = journal
        self._histogram = histogram

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._journal, name)
        if name in TIMED:
            return self._timed(name, value)
        if name == "submit_done":
            return self._submitted(value)
        return value

    def _timed(self, name: str, method: Callable[..., Awaitable[Any]]
               ) -> Callable[..., Awaitable[Any]]:
        observe = self._histogram.labels(name).observe

        @functools.wraps(method)
        async def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return await method(*args, **kwargs)
            finally:
                observe(time.perf_counter() - start)

        return timed

    def _submitted(self, method: Callable[..., Awaitable[object]]
                   ) -> Callable[..., Awaitable[object]]:
        observe = self._histogram.labels("mark_done").observe

        @functools.wraps(method)
        def submit(*args: Any, **kwargs: Any) -> Awaitable[object]:
            start = time.perf_counter()
            pending = method(*args, **kwargs)
            # Durable when the future resolves, whoever awaits it and when.
            if isinstance(pending, asyncio.Future):
                pending.add_done_callback(lambda _: observe(time.perf_counter() - start))
            return pending

        return submit


def timed_journal(journal: Journal, histogram: Histogram) -> Journal:
    """``journal``, its writes timed into ``histogram`` (labelled by operation)."""
    return cast(Journal, _TimedJournal(journal, histogram))
