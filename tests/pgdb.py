"""A PostgreSQL database of its own for each test, made from a template on the machine's server.

The server is ``FORGE_RUNNER_TEST_PG`` (default ``postgresql://postgres@127.0.0.1:5432/test``,
trust auth); the fault tests restart it as the Debian cluster ``FORGE_RUNNER_TEST_PG_CLUSTER``
names (default ``15/main``, the machine's and CI's: another cluster on another port lets a
developer run them while other suites use the main one). Without a reachable server a test
that needs one skips, except under ``CI=true``, where it fails: CI always has the server.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

ADMIN_URL = os.environ.get("FORGE_RUNNER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
TEMPLATE = "forge_runner_test_template"


def _admin() -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at {ADMIN_URL} is not reachable under CI=true: {exc}")
        pytest.skip(f"PostgreSQL at {ADMIN_URL} is not reachable: {exc}")


def url_for(database: str) -> str:
    """The admin URL with its database replaced: a ``postgresql://`` URL, as a config holds."""
    parts = urlsplit(ADMIN_URL)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, ""))


def _ensure_template(admin: psycopg.Connection[tuple[object, ...]]) -> None:
    # Empty on purpose: the journal migrates a database forward when it opens it, so each test
    # also proves that a fresh database is made usable.
    exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (TEMPLATE,)).fetchone()
    if exists is None:
        # Another test process may make it first: PostgreSQL says so as DuplicateDatabase, or,
        # when both are inside CREATE DATABASE at once, as a unique violation on
        # pg_database's name index.
        with suppress(psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE)))


@contextmanager
def fresh_database() -> Iterator[str]:
    """``with fresh_database() as url:`` a new database, dropped (connections and all) after."""
    admin = _admin()
    name = f"forge_runner_t_{uuid.uuid4().hex[:16]}"
    try:
        _ensure_template(admin)
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(TEMPLATE)))
        yield url_for(name)
    finally:
        admin.close()
        # A new connection: a test may have restarted the server, ending the first one.
        with _admin() as again:
            again.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))


def pg_dump(url: str) -> bytes:
    """Everything the database at ``url`` holds, as ``pg_dump`` writes it (schema and rows)."""
    tool = shutil.which("pg_dump")
    if tool is None:
        pytest.fail("pg_dump is not on PATH (the PostgreSQL client tools are needed)")
    return subprocess.run([tool, "--no-owner", url], check=True, capture_output=True).stdout


CLUSTER = os.environ.get("FORGE_RUNNER_TEST_PG_CLUSTER", "15/main")


def can_restart() -> None:
    """Skip (fail under CI=true) a test that must restart the server, where it can't."""
    why = None
    if shutil.which("pg_ctlcluster") is None:
        why = "pg_ctlcluster is not on PATH"
    elif os.geteuid() != 0:
        why = "restarting the server needs root"
    if why is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"can't restart PostgreSQL under CI=true: {why}")
        pytest.skip(why)


async def restart_server() -> None:
    """Restart the server as a crash would (``-m immediate``): about 2.5 s."""
    version, name = CLUSTER.split("/", 1)
    proc = await asyncio.create_subprocess_exec(
        "pg_ctlcluster", "--skip-systemctl-redirect", version, name, "restart", "-m",
        "immediate", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode()
