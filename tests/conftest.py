"""Fixtures shared by every test: a configured sandbox, served on a free loopback port.

The world's constants (cloud IDs, users per state) live in ``runner.sandbox.testing``; import
them from there. They are re-exported here only so a reader of this file sees what exists.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest
import structlog

from runner.sandbox.app import RunningSandbox, serve
from runner.sandbox.config import SandboxConfig
from runner.sandbox.testing import (  # noqa: F401  (re-exported for readers)
    ACME_ACTIVE,
    ACME_DEACTIVATED,
    ACME_NO_ACCESS,
    CLOUD_A,
    CLOUD_B,
    GLOBEX_ACTIVE,
    GLOBEX_DEACTIVATED,
    GLOBEX_NO_ACCESS,
    INSTALLATION_A,
    INSTALLATION_B,
    UNKNOWN_ACCOUNT,
    StartSandbox,
    make_sandbox_config,
    require_specs_dir,
)
from runner.sandbox.world import Clock


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test that restarts PostgreSQL fails at once, restarting nothing, in an xdist worker:
    beside it every other worker's PostgreSQL tests would lose their connections."""
    if item.get_closest_marker("restarts_postgres") and hasattr(item.config, "workerinput"):
        pytest.fail("this test restarts PostgreSQL and must run alone: "
                    "`pytest -m restarts_postgres` without -n (the README's test command "
                    "runs it so, after the rest)", pytrace=False)


@pytest.fixture
def sandbox_config() -> SandboxConfig:
    """Sites acme (CLOUD_A) and globex (CLOUD_B); environments dev and noimp; default limits."""
    return make_sandbox_config()


@pytest.fixture
def start_sandbox() -> StartSandbox:
    """``async with start_sandbox(config[, clock=...]) as sb:`` serves on a free loopback port."""

    def start(
        config: SandboxConfig, *, clock: Clock = time.time
    ) -> AbstractAsyncContextManager[RunningSandbox]:
        return serve(config, host="127.0.0.1", port=0, clock=clock)

    return start


@pytest.fixture
async def sandbox(sandbox_config: SandboxConfig) -> AsyncIterator[RunningSandbox]:
    """The default sandbox world, served."""
    async with serve(sandbox_config, port=0) as running:
        yield running


@pytest.fixture
def specs_dir() -> Path:
    """The real Atlassian specs; the test skips without them, except under CI=true (fails)."""
    return require_specs_dir()


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """For tests that configure logging for the process: put it back for the tests that follow."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.configure(**saved)
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL database of the test's own (see ``tests/pgdb.py``); dropped after the test."""
    from tests.pgdb import fresh_database

    with fresh_database() as url:
        yield url
