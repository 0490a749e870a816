"""A process's tools and the tools it builds for a run serve started: which quota clock each
paces by, in a real SQLite budget store."""

from __future__ import annotations

from pathlib import Path

from runner.budgets import SystemClock
from runner.budgets.sharedjira import SharedJiraPacer
from runner.budgets.store import connect
from runner.budgets.store.programs import Gen, Stmt
from runner.config.configfile import load_config
from runner.engine.tools import engine_tools
from runner.events import NullObserver
from runner.jira.client import JiraRequest

ROOT = Path(__file__).resolve().parents[2]
READ = JiraRequest("GET", "/rest/api/3/myself", "/rest/api/3/myself")


def _clocks(now: float) -> Gen[tuple[float, float] | None]:
    row = yield Stmt("SELECT tat, serve_tat FROM budget_quota WHERE scope = 'quota:global'", {})
    return None if row is None else (float(row[0]), float(row[1]))


async def test_a_serve_run_s_tools_pace_by_serve_s_clock(tmp_path: Path) -> None:
    """Tools for a run serve started (``for_config(serve_run=True)``, as a worker builds them)
    take from serve's clock of the shared quota and leave the other where it was; the
    process's own tools take from the other clock; both share the one store."""
    config = load_config(ROOT / "config.example.toml")
    store = await connect(tmp_path / "journal.db")
    try:
        async with engine_tools(config, config.environments, concurrency=1, store=store,
                                clock=SystemClock(), observer=NullObserver()) as tools:
            serves = tools.for_config(config, config.environments, clock=SystemClock(),
                                      observer=NullObserver(), serve_run=True)
            assert isinstance(tools.pacer, SharedJiraPacer) and not tools.pacer.serve
            assert isinstance(serves.pacer, SharedJiraPacer) and serves.pacer.serve
            async with tools.pacer.permit("acme", READ) as permit:
                permit.spent()
            first = await store.run(_clocks)
            assert first is not None
            async with serves.pacer.permit("acme", READ) as permit:
                permit.spent()
            second = await store.run(_clocks)
            assert second is not None
            assert second[0] == first[0] and second[1] > first[1]
            again = tools.for_config(config, config.environments, clock=SystemClock(),
                                     observer=NullObserver())
            assert isinstance(again.pacer, SharedJiraPacer) and not again.pacer.serve
    finally:
        await store.close()
