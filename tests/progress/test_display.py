"""The live view, the plain progress lines and the end summary, rendered from RunStats."""

from __future__ import annotations

import asyncio
import io
import secrets
import sys
from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest
import structlog
from rich.console import Console
from structlog.testing import LogCapture, capture_logs

from runner.events import (
    ItemBlocked,
    ItemDone,
    ItemFailed,
    ItemSkipped,
    JiraRateLimited,
    MintContextRefused,
    MintOk,
    MintRateLimited,
)
from runner.logs.redact import register_secret
from runner.logs.setup import configure_logging, get_logger
from runner.progress import LiveView, MintBudget, PlainProgress, RunStats, Summary, open_progress
from tests.fakes import FakeClock


class WatchedIO(io.StringIO):
    """A console file that signals when what was written contains a given text."""

    def __init__(self) -> None:
        super().__init__()
        self._waiters: list[tuple[str, asyncio.Event]] = []

    def when_contains(self, text: str) -> asyncio.Event:
        event = asyncio.Event()
        self._waiters.append((text, event))
        self._check()
        return event

    def write(self, s: str) -> int:
        n = super().write(s)
        self._check()
        return n

    def _check(self) -> None:
        value = self.getvalue()
        for text, event in self._waiters:
            if text in value:
                event.set()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def stats(clock: FakeClock) -> RunStats:
    """A run 30 s in: 30 done, 1 failed of 100, mints, 429s, a pause, a blocked environment."""
    s = RunStats(
        total=100,
        budgets={"prod": MintBudget(60, 3.0)},
        buckets={"prod-env": "prod"},
        clock=clock.monotonic,
        wall=clock.wall,
    )
    for n in range(30):
        clock.advance(1.0)
        s.event(MintOk(environment="prod-env", site="alpha", account=f"a{n}"))
        s.event(ItemDone(site="alpha" if n % 2 else "beta", account=f"a{n}", row=str(n),
                action="myself"))
    s.event(ItemFailed(site="alpha", account="a1", row="1", action="comment.add",
            reason="400 Field 'summary' is required"))
    s.event(JiraRateLimited(site="alpha", scope="burst:alpha GET /rest/api/3/myself",
            reason="jira-burst-based", until=clock.wall() + 5))
    s.event(MintRateLimited(bucket="prod", until=clock.wall() + 2, shape="retry_after"))
    s.event(MintContextRefused(environment="dev", aris=("ari:cloud:jira:c:workspace/c",),
            message="Could not load permissions for app user"))
    return s


def _console(file: io.StringIO | None = None, *, terminal: bool = False) -> Console:
    return Console(record=True, width=120, file=file or io.StringIO(), force_terminal=terminal,
                   color_system=None)


def test_live_view_renders_the_numbers(stats: RunStats) -> None:
    """The live view shows items, mints against the budget, 429s, pauses and ETA."""
    console = _console()
    console.print(LiveView(stats, console=console).render())
    text = console.export_text()
    assert "31 of 100 (31.0%)" in text
    assert "done 30" in text and "failed 1" in text and "skipped 0" in text
    assert "prod 30 (3/60 per 3s)" in text
    assert "burst jira-burst-based 1" in text and "mint retry_after 1" in text
    assert "burst:alpha GET /rest/api/3/myself  jira-burst-based  for 5.0s" in text
    assert "mint:prod  rate limited (retry_after)  for 2.0s" in text
    assert "environment dev: Could not load permissions" in text
    assert "alpha: 15 done, 1 failed" in text and "beta: 15 done" in text
    # 31 items in 30 s, 69 left.
    assert "ETA 1m 07s" in text
    assert "item.failed" in text


def test_live_view_redacts_what_it_shows(stats: RunStats) -> None:
    """A registered token that slipped into an event's reason is not shown on screen."""
    token = "tok-" + secrets.token_urlsafe(20)
    register_secret(token)
    stats.event(ItemFailed(site="alpha", account="a", row="2", action="x", reason=f"bad {token}"))
    console = _console()
    console.print(LiveView(stats, console=console, title=f"run {token}").render())
    text = console.export_text()
    assert "bad [REDACTED]" in text
    assert token not in text


async def test_live_view_refreshes_on_a_timer_and_shows_the_end(
    stats: RunStats, clock: FakeClock
) -> None:
    """Running, the view picks up new counts by itself; stopped, it shows the final state."""
    out = WatchedIO()
    console = _console(out, terminal=True)
    view = LiveView(stats, console=console, refresh_per_second=50)
    original_stdout = sys.stdout
    async with asyncio.timeout(10):
        async with asyncio.TaskGroup() as tg:
            tg.create_task(view.run())
            await out.when_contains("done 30").wait()
            for n in range(5):
                stats.event(ItemDone(site="alpha", account="b", row=str(100 + n), action="myself"))
            await out.when_contains("done 35").wait()
            stats.event(ItemSkipped(site="alpha", account="c", row="200", action="x",
                        reason="user deactivated"))
            view.stop()
    assert sys.stdout is original_stdout  # the live display gave stdout back
    text = console.export_text()
    assert "skipped 1" in text.split("done 35")[-1]


async def test_live_view_cancelled_still_restores_the_terminal(stats: RunStats) -> None:
    """Cancelling the view's task stops the live display and shows the last state."""
    out = WatchedIO()
    view = LiveView(stats, console=_console(out, terminal=True), refresh_per_second=50)
    original_stdout = sys.stdout
    async with asyncio.timeout(10):
        async with asyncio.TaskGroup() as tg:
            running = tg.create_task(view.run())
            await out.when_contains("done 30").wait()
            stats.event(ItemBlocked(site="alpha", account="d", row="300", action="x",
                        reason="environment blocked"))
            running.cancel()
    assert sys.stdout is original_stdout
    assert "blocked 1" in out.getvalue()


def test_plain_progress_logs_one_line_of_fields(stats: RunStats) -> None:
    """A tick logs one runner.progress event with the counts, rate, ETA, mints and pauses."""
    with capture_logs() as captured:
        PlainProgress(stats, interval_s=5).tick()
    (line,) = captured
    assert line["event"] == "runner.progress"
    assert (line["done"], line["failed"], line["finished"], line["total"]) == (30, 1, 31, 100)
    assert line["eta_s"] == pytest.approx(69 / (31 / 30), abs=0.1)
    assert line["mints"] == 30 and line["rate_limited"] == 2
    assert "mint:prod (rate limited (retry_after))" in line["paused"]
    assert line["blocked_environments"] == "dev"


@pytest.fixture
def signalled_capture() -> Iterator[tuple[LogCapture, dict[str, Any]]]:
    """structlog captures events and sets an asyncio.Event after a wanted number of them."""
    capture = LogCapture()
    state: dict[str, Any] = {"want": 0, "event": None}

    def signal(_: object, __: str, event_dict: MutableMapping[str, Any]) -> Any:
        if len(capture.entries) + 1 >= state["want"] and state["event"] is not None:
            state["event"].set()
        return event_dict

    saved = structlog.get_config()
    structlog.configure(processors=[signal, capture])
    try:
        yield capture, state
    finally:
        structlog.configure(**saved)


async def test_plain_progress_logs_every_interval(
    stats: RunStats, signalled_capture: tuple[LogCapture, dict[str, Any]]
) -> None:
    """Run as a task, plain progress logs a line each interval and a last one when stopped."""
    capture, state = signalled_capture
    state["want"], state["event"] = 3, asyncio.Event()
    progress = PlainProgress(stats, interval_s=0.01)
    async with asyncio.timeout(10):
        async with asyncio.TaskGroup() as tg:
            tg.create_task(progress.run())
            await state["event"].wait()
            stats.event(ItemDone(site="alpha", account="z", row="999", action="myself"))
            progress.stop()
    events = [entry["event"] for entry in capture.entries]
    assert len(events) >= 4 and set(events) == {"runner.progress"}
    assert capture.entries[-1]["done"] == 31


def test_open_progress_picks_live_on_a_terminal_only(stats: RunStats) -> None:
    """A terminal console gets the live view; a pipe or file gets plain log lines."""
    assert isinstance(open_progress(stats, console=_console(terminal=True)), LiveView)
    assert isinstance(open_progress(stats, console=_console(terminal=False)), PlainProgress)


def test_refresh_interval_must_be_positive(stats: RunStats) -> None:
    """A zero or negative refresh interval is refused at construction."""
    with pytest.raises(ValueError, match="positive"):
        PlainProgress(stats, interval_s=0)


def test_summary_shows_counts_duration_mints_and_reasons(stats: RunStats) -> None:
    """The summary lists counts, duration against the lower bound, mints, 429s, pauses."""
    stats.finish()
    text = Summary.render(stats, lower_bound_s=20.0)
    assert "31 of 100 finished: 30 done, 1 failed" in text
    assert "30.0s (the budgets allow 20.0s at best: 1.50x)" in text
    assert "30 (1 refused): prod 30 (budget 60 per 3s)" in text
    assert "429s" in text and "2: burst jira-burst-based 1, mint retry_after 1" in text
    assert "pauses" in text and "mint rate limited (retry_after) 1" in text
    assert "environment dev: Could not load permissions" in text
    assert "1  failed    400 Field 'summary' is required" in text
    assert "per site  alpha: 15 done, 1 failed; beta: 15 done" in text


def test_summary_ranks_the_top_reasons(clock: FakeClock) -> None:
    """Only the top N reasons are listed, commonest first."""
    stats = RunStats(total=None, clock=clock.monotonic, wall=clock.wall)
    for reason, n in [("rare", 1), ("common", 5), ("middle", 3)]:
        for _ in range(n):
            stats.event(ItemFailed(site="a", account="x", row="1", action="y", reason=reason))
    text = Summary.render(stats, top=2)
    assert "top 2 of items not done" in text
    lines = text.splitlines()
    common = next(i for i, line in enumerate(lines) if line.endswith("common"))
    middle = next(i for i, line in enumerate(lines) if line.endswith("middle"))
    assert common < middle
    assert not any(line.endswith("rare") for line in lines)
    assert "9 of ? finished" in text and "429s" in text and "none" in text


def test_summary_contains_no_registered_secret(stats: RunStats) -> None:
    """A registered token in a reason or a blocked environment's message is redacted."""
    token = "tok-" + secrets.token_urlsafe(20)
    register_secret(token)
    stats.event(ItemFailed(site="alpha", account="a", row="3", action="x", reason=token))
    stats.event(MintContextRefused(environment="stage", aris=(), message=f"m {token}"))
    text = Summary.render(stats)
    assert token not in text
    assert "[REDACTED]" in text




async def test_log_lines_print_above_the_live_view(
    stats: RunStats, restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """With the default stream, log lines written during the live view go through its console."""
    configure_logging(format="plain")
    out = WatchedIO()
    view = LiveView(stats, console=_console(out, terminal=True), refresh_per_second=50)
    async with asyncio.timeout(10):
        async with asyncio.TaskGroup() as tg:
            tg.create_task(view.run())
            await out.when_contains("done 30").wait()
            get_logger().warning("runner.test.during_live", n=1)
            await out.when_contains("runner.test.during_live").wait()
            view.stop()
    assert "runner.test.during_live" not in capsys.readouterr().err


def test_summary_gives_no_ratio_to_a_bound_that_prints_as_zero(stats: RunStats) -> None:
    """A bound under 0.05 s (loopback, budgets far away) would print "0.0s at best: 1002x":
    the duration is shown alone."""
    stats.finish()
    assert "at best" not in Summary.render(stats, lower_bound_s=0.001)
    assert "at best" in Summary.render(stats, lower_bound_s=0.05)
