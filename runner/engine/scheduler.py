"""Fair hand-out of work across sites: weighted round-robin, a fair share of workers per site.

Rows arrive per site (each site's rows come from their own pass over the source, so a source
sorted by site still feeds every site at once). A worker asks for the next unit; the scheduler
picks among sites with work ready, by smooth weighted round-robin, and prefers sites using less
than their share of the workers, so one site whose calls are slow, failing or paused can hold at
most its share while another site has work. When only one site has work, it gets every worker.
A site whose producer has not yet looked at its first chunk counts as having work: its pass may
be a moment behind another's, and workers handed all to the first site's slow calls would leave
the late site waiting on them.

Memory: each site's queue is bounded, so what is buffered follows concurrency, not job size.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class _Lane(Generic[T]):
    weight: float
    queue: deque[T] = field(default_factory=deque)
    in_flight: int = 0
    current: float = 0.0  # smooth weighted round-robin credit
    open: bool = True  # its producer may still add
    primed: bool = False  # its producer has looked at its first chunk (or closed)


class FairScheduler(Generic[T]):
    """Units of work per site, handed to workers fairly. ``None`` from ``next`` means: all done."""

    def __init__(self, weights: Mapping[str, float], *, workers: int, buffer_per_site: int = 64):
        if not weights:
            raise ValueError("at least one site")
        self._lanes: dict[str, _Lane[T]] = {s: _Lane(max(w, 1e-9)) for s, w in weights.items()}
        self._workers = max(1, workers)
        self._buffer = max(1, buffer_per_site)
        self._changed = asyncio.Event()
        self._stopped = False

    # -- producers ----------------------------------------------------------------------------

    async def put(self, site: str, unit: T) -> None:
        """Add a unit for ``site``, waiting while that site's buffer is full."""
        lane = self._lanes[site]
        while len(lane.queue) >= self._buffer and not self._stopped:
            await self._wait_change()
        if self._stopped:
            return
        lane.queue.append(unit)
        lane.primed = True
        self._notify()

    def primed(self, site: str) -> None:
        """``site``'s producer has looked at its first chunk, whether or not it had work: from
        now on the site counts for a share only while it has units queued or running."""
        lane = self._lanes[site]
        if not lane.primed:
            lane.primed = True
            self._notify()

    def close(self, site: str) -> None:
        """``site``'s producer has no more units."""
        self._lanes[site].open = False
        self._lanes[site].primed = True
        self._notify()

    def stop(self) -> None:
        """Hand out nothing more (a drain): waiting workers get ``None``, producers return."""
        self._stopped = True
        for lane in self._lanes.values():
            lane.queue.clear()
        self._notify()

    # -- workers ------------------------------------------------------------------------------

    async def next(self) -> tuple[str, T] | None:
        """The next (site, unit) to work on, or None once every site is drained or stopped."""
        while True:
            if self._stopped:
                return None
            site = self._pick()
            if site is not None:
                lane = self._lanes[site]
                unit = lane.queue.popleft()
                lane.in_flight += 1
                self._notify()
                return site, unit
            if not any(lane.open or lane.queue for lane in self._lanes.values()):
                return None
            await self._wait_change()

    def done(self, site: str) -> None:
        """A worker finished a unit of ``site``."""
        self._lanes[site].in_flight -= 1
        self._notify()

    def in_flight(self, site: str) -> int:
        return self._lanes[site].in_flight

    # -- internals ----------------------------------------------------------------------------

    def _share(self, site: str, ready: list[str]) -> float:
        total = sum(self._lanes[s].weight for s in ready)
        return max(1.0, self._workers * self._lanes[site].weight / total)

    def _pick(self) -> str | None:
        ready = [s for s, lane in self._lanes.items() if lane.queue]
        if not ready:
            return None
        # Sites with work that have (or are running) fewer workers than their share come first.
        # Every site that could use a worker counts when sharing out, busy or not, and so does
        # a site still loading its first chunk: until it has, no site takes more than its share.
        wanting = [s for s, lane in self._lanes.items()
                   if lane.queue or lane.in_flight or not lane.primed]
        under = [s for s in ready if self._lanes[s].in_flight < self._share(s, wanting)]
        loading = any(not lane.primed for lane in self._lanes.values())
        candidates = under or ([] if loading else ready)
        if not candidates:
            return None
        total = sum(self._lanes[s].weight for s in candidates)
        for s in candidates:
            self._lanes[s].current += self._lanes[s].weight
        best = max(candidates, key=lambda s: self._lanes[s].current)
        self._lanes[best].current -= total
        return best

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait_change(self) -> None:
        await self._changed.wait()
