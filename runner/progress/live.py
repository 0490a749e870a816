"""Showing a run while it goes: a rich live view on a terminal, plain log lines elsewhere.

Both are started as a task in the engine's task group (``tg.create_task(display.run())``) and end
when ``stop()`` is called or the task is cancelled, showing the final state either way. Rendering
happens in that task on a timer, never in a thread: ``RunStats`` is only ever touched from the
event loop, and a slow terminal delays a refresh, not the run's events.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from abc import ABC, abstractmethod
from datetime import datetime
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from runner.logs.redact import redact
from runner.logs.setup import get_logger
from runner.progress import fmt
from runner.progress.stats import ITEM_STATES, RunStats

STATE_STYLES = {
    "done": "green",
    "failed": "red",
    "skipped": "yellow",
    "blocked": "magenta",
    "uncertain": "cyan",
}


class _Timer(ABC):
    """The loop both displays share: act every ``interval_s`` until stopped or cancelled."""

    interval_s: float

    def __init__(self, interval_s: float) -> None:
        if not interval_s > 0 or math.isinf(interval_s):
            raise ValueError(f"refresh interval: expected a positive number, found {interval_s}")
        self.interval_s = interval_s
        self._stop = asyncio.Event()

    def stop(self) -> None:
        """Let ``run`` show the final state and return."""
        self._stop.set()

    async def run(self) -> None:
        self._open()
        try:
            while not self._stop.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.interval_s):
                        await self._stop.wait()
                if not self._stop.is_set():
                    self.tick()
        finally:
            # Also on cancellation: this is synchronous, so it completes before the task ends.
            self._close()

    @abstractmethod
    def tick(self) -> None:
        """Show the current state once."""

    def _open(self) -> None:
        return None

    def _close(self) -> None:
        self.tick()


class LiveView(_Timer):
    """A rich ``Live`` display of a ``RunStats``, refreshed ``refresh_per_second`` times."""

    def __init__(
        self,
        stats: RunStats,
        *,
        console: Console | None = None,
        refresh_per_second: float = 4.0,
        title: str = "forge-runner",
        redirect: bool = True,
    ) -> None:
        super().__init__(1.0 / refresh_per_second)
        self.stats = stats
        self.console = console or Console()
        self.title = title
        self._redirect = redirect
        self._live: Live | None = None

    def _open(self) -> None:
        # auto_refresh=False: rich would otherwise render from its own thread while the event
        # loop mutates the stats.
        self._live = Live(
            self.render(),
            console=self.console,
            auto_refresh=False,
            redirect_stdout=self._redirect,
            redirect_stderr=self._redirect,
        )
        self._live.start(refresh=True)

    def tick(self) -> None:
        if self._live is not None:
            self._live.update(self.render(), refresh=True)

    def _close(self) -> None:
        live, self._live = self._live, None
        if live is not None:
            live.update(self.render(), refresh=True)
            live.stop()

    def render(self) -> RenderableType:
        """The current state as a rich renderable (every text redacted)."""
        s = self.stats
        now = s.now_wall()
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column()
        grid.add_row("items", self._items())
        if s.total:
            grid.add_row("", ProgressBar(total=s.total, completed=s.finished, width=60))
        grid.add_row("mints", _text(self._mints()))
        grid.add_row("429s", _text("   ".join(fmt.ranked(s.rate_limits)) or "none"))
        pauses = s.active_pauses()
        for i, pause in enumerate(pauses[:6]):
            line = f"{pause.scope}  {pause.reason}  {fmt.until(pause.until, now)}"
            grid.add_row("paused" if i == 0 else "", _text(line, "yellow"))
        if len(pauses) > 6:
            grid.add_row("", _text(f"... and {len(pauses) - 6} more"))
        for env, message in sorted(s.blocked_environments.items()):
            grid.add_row("blocked", _text(f"environment {env}: {message}", "bold red"))
        if len(s.sites) > 1:
            for i, (site, counts) in enumerate(sorted(s.sites.items())[:8]):
                states = ", ".join(
                    f"{fmt.count(n)} {state}" for state, n in counts.as_dict().items() if n
                )
                grid.add_row("sites" if i == 0 else "", _text(f"{site}: {states}"))
        for i, note in enumerate(s.notable):
            clock = datetime.fromtimestamp(note.at).strftime("%H:%M:%S")
            line = f"{clock} {note.name} {note.text}"
            grid.add_row("recent" if i == 0 else "", _text(line, "dim"))
        header = Text.assemble(
            (redact(self.title), "bold"),
            f"   elapsed {fmt.duration(s.elapsed_s())}",
            f"   {fmt.rate(s.item_rate())}",
            f"   ETA {fmt.duration(s.eta_s())}",
        )
        return Group(header, grid)

    def _items(self) -> Text:
        s = self.stats
        text = Text(f"{fmt.count(s.finished)} of {fmt.count(s.total)}")
        if s.total:
            text.append(f" ({100.0 * s.finished / s.total:.1f}%)")
        for state in ITEM_STATES:
            text.append("  ")
            text.append(f"{state} {fmt.count(getattr(s.counts, state))}", STATE_STYLES[state])
        return text

    def _mints(self) -> str:
        s = self.stats
        if not s.mints and not s.budgets:
            return "none"
        parts = []
        for bucket in sorted(set(s.mints) | set(s.budgets)):
            budget = s.budgets.get(bucket)
            used = f"{bucket} {fmt.count(s.mints[bucket])}"
            if budget is not None:
                used += (
                    f" ({fmt.count(s.mints_in_window(bucket))}/{fmt.count(budget.limit)}"
                    f" per {fmt.window(budget.window_s)})"
                )
            parts.append(used)
        refused = sum(s.refused_users.values())
        if refused:
            who = "user" if refused == 1 else "users"
            parts.append(f"{fmt.count(refused)} {who} can't be impersonated")
        return "   ".join(parts)


class PlainProgress(_Timer):
    """One ``runner.progress`` log line every ``interval_s`` seconds, for logs and pipes."""

    def __init__(self, stats: RunStats, *, interval_s: float = 10.0) -> None:
        super().__init__(interval_s)
        self.stats = stats
        self._log = get_logger()

    def fields(self) -> dict[str, Any]:
        s = self.stats
        rate = s.item_rate()
        eta = s.eta_s()
        fields: dict[str, Any] = {**s.counts.as_dict(), "finished": s.finished, "total": s.total}
        fields["elapsed_s"] = round(s.elapsed_s(), 1)
        fields["rate_per_s"] = None if rate is None else round(rate, 2)
        fields["eta_s"] = None if eta is None else round(eta, 1)
        fields["mints"] = sum(s.mints.values())
        fields["rate_limited"] = sum(s.rate_limits.values())
        pauses = s.active_pauses()
        fields["paused"] = "; ".join(f"{p.scope} ({p.reason})" for p in pauses) or None
        if s.blocked_environments:
            fields["blocked_environments"] = ",".join(sorted(s.blocked_environments))
        return fields

    def tick(self) -> None:
        self._log.info("runner.progress", **self.fields())


def open_progress(
    stats: RunStats,
    *,
    console: Console | None = None,
    interval_s: float = 10.0,
    refresh_per_second: float = 4.0,
    title: str = "forge-runner",
) -> LiveView | PlainProgress:
    """A live view when ``console`` (default: stdout) is a terminal, plain lines otherwise."""
    console = console or Console()
    if console.is_terminal and not console.is_dumb_terminal:
        return LiveView(stats, console=console, refresh_per_second=refresh_per_second, title=title)
    return PlainProgress(stats, interval_s=interval_s)


def _text(value: str, style: str = "") -> Text:
    return Text(redact(value), style=style)

