"""What ``serve`` replicas share in the journal's PostgreSQL: installations, triggers, tokens.

Several replicas behind a load balancer see different deliveries of the same trigger (Forge
redelivers, and may deliver twice), so which delivery starts a run can't be a process's memory.
A delivery is accepted by one conditional ``INSERT`` into ``serve_triggers`` under the unique
key (route, installation, interval): the interval is the number of whole intervals since the
epoch by the database's clock, so exactly one run per installation per interval starts however
many replicas or deliveries there are. The same ``INSERT`` keeps today's other two rules: a
delivery within the route's dedup window of the last accepted one is a duplicate (a redelivery
that crosses an interval's boundary), and one that comes while the installation's run still goes
on starts nothing. A run "goes on" while its row has no ``ended_at`` and the replica running it
renewed ``alive_at`` within ``STALE_S`` (a replica that died stops blocking the next interval).
An advisory lock per (route, installation) orders the deliveries of one pair, so the window and
running checks see each other's rows.

The tables are versioned on their own (``serve_schema``), apart from the journal's; the sealed
tokens' tables (``runner.minting.sealed``) are one of their steps.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from dataclasses import dataclass
from typing import Any, LiteralString

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from runner.errors import JournalError
from runner.journal.outage import pooled
from runner.journal.pgurl import safe_url
from runner.journal.schema import newer_journal
from runner.minting import sealed
from runner.minting.sealed import SealKey
from runner.minting.system_tokens import jwt_exp
from runner.remote.installation_tokens import Installation

# Advisory lock classes, apart from the journal's (0x4652000x): migrations, a trigger's pair.
MIGRATION_LOCK = 0x46520101
TRIGGER_LOCK = 0x46520102
# A replica renews its runs' rows this often; a row not renewed for STALE_S is a dead run.
HEARTBEAT_S = 10.0
STALE_S = 30.0
CONNECT_TIMEOUT_S = 5.0
# /readyz answers within this (load balancers' probes time out in a few seconds).
PING_TIMEOUT_S = 2.0
POOL_SIZE = 4

SERVE_TABLES: tuple[LiteralString, ...] = (
    """CREATE TABLE serve_installations (
        installation_id text PRIMARY KEY,
        cloud_id text NOT NULL,
        api_base_url text NOT NULL,
        environment_type text NOT NULL,
        environment_id text NOT NULL,
        first_seen double precision NOT NULL
    )""",
    """CREATE TABLE serve_triggers (
        trigger_id bigserial PRIMARY KEY,
        route text NOT NULL,
        installation_id text NOT NULL REFERENCES serve_installations (installation_id),
        interval_no bigint NOT NULL,
        accepted_at double precision NOT NULL,
        replica text NOT NULL,
        alive_at double precision NOT NULL,
        ended_at double precision,
        outcome text,
        UNIQUE (route, installation_id, interval_no)
    )""",
    "CREATE INDEX serve_triggers_by_pair ON serve_triggers (route, installation_id, accepted_at)",
)

# Each step moves the schema from version n - 1 to n; add steps, never edit a shipped one.
MIGRATIONS: list[tuple[LiteralString, ...]] = [SERVE_TABLES + sealed.SEALED_TABLES]

_NOW = "extract(epoch from now())"


@dataclass(frozen=True)
class AcceptedTrigger:
    """A delivery the database accepted: what a run needs to start, wherever it starts."""

    trigger_id: int
    route: str
    installation_id: str


@dataclass(frozen=True)
class Acceptance:
    """What the database made of a delivery: accepted (with its row), a duplicate, or running."""

    decision: str  # "accepted" | "duplicate" | "running"
    trigger: AcceptedTrigger | None = None
    accepted_s_ago: float = 0.0  # a duplicate's: how long ago the trigger it repeats came


def replica_name() -> str:
    """This process among the replicas: host, pid, and a random part (a pid is reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class ServeDatabase:
    """The serve replicas' tables in the PostgreSQL database at ``url``."""

    def __init__(self, url: str, pool: AsyncConnectionPool[Any], key: SealKey) -> None:
        self.url = url
        self._pool = pool
        self.key = key
        self.replica = replica_name()
        self._running: set[int] = set()
        self._ended: dict[int, str] = {}  # ended, not yet marked in the database

    @classmethod
    async def open(cls, url: str, key: SealKey) -> ServeDatabase:
        """Migrate the tables forward and check ``key`` against the database's; JournalError
        (exit 6) when the database can't be reached, SealKeyError for another key."""
        try:
            conn = await psycopg.AsyncConnection.connect(
                url, autocommit=True, connect_timeout=int(CONNECT_TIMEOUT_S))
            async with conn:
                await _migrate(conn, safe_url(url))
                async with conn.transaction():
                    await sealed.check_key(conn, key)
        except psycopg.Error as exc:
            raise _unreachable(url, exc) from None
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            url, min_size=1, max_size=POOL_SIZE, open=False, kwargs={"autocommit": True},
            timeout=CONNECT_TIMEOUT_S)
        try:
            await pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
        except PoolTimeout as exc:
            await pool.close()
            raise _unreachable(url, exc) from None
        return cls(url, pool, key)

    async def close(self) -> None:
        await self._pool.close()

    async def ping(self) -> str | None:
        """None when the database answers; else why not, in a few words (no URL, no secret)."""
        try:
            async with pooled(self._pool, wait_s=PING_TIMEOUT_S) as conn:
                await conn.execute("SELECT 1")
        except (psycopg.Error, PoolTimeout) as exc:
            return f"database unreachable ({type(exc).__name__})"
        return None

    async def see(self, inst: Installation, token: str, *, leeway_s: float) -> bool:
        """Record (or refresh) an installation, and keep the system token its delivery
        brought, sealed (``runner.minting.sealed.keep``); one transaction. True when the token
        was new."""
        async with pooled(self._pool) as conn, conn.transaction():
            await conn.execute(
                f"""INSERT INTO serve_installations VALUES (%s, %s, %s, %s, %s, {_NOW})
                    ON CONFLICT (installation_id) DO UPDATE SET
                      cloud_id = excluded.cloud_id, api_base_url = excluded.api_base_url,
                      environment_type = excluded.environment_type,
                      environment_id = excluded.environment_id""",
                (inst.installation_id, inst.cloud_id, inst.api_base_url,
                 inst.environment_type, inst.environment_id))
            if not token:
                return False
            return await sealed.keep(conn, self.key, inst.installation_id, token,
                                     jwt_exp(token), leeway_s=leeway_s)

    async def installation(self, installation_id: str) -> Installation | None:
        async with pooled(self._pool) as conn:
            cur = await conn.execute(
                "SELECT installation_id, cloud_id, api_base_url, environment_type, "
                "environment_id, first_seen FROM serve_installations WHERE installation_id = %s",
                (installation_id,))
            row = await cur.fetchone()
        return Installation(*row) if row else None

    async def accept(self, route: str, installation_id: str, interval_s: float,
                     window_s: float) -> Acceptance:
        """Whether this delivery starts a run: the conditional INSERT of the module's doc."""
        params = {"route": route, "inst": installation_id, "interval": interval_s,
                  "window": window_s, "stale": STALE_S, "replica": self.replica}
        async with pooled(self._pool) as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s || ' ' || %s))",
                               (TRIGGER_LOCK, route, installation_id))
            cur = await conn.execute(
                f"""INSERT INTO serve_triggers
                        (route, installation_id, interval_no, accepted_at, replica, alive_at)
                    SELECT %(route)s, %(inst)s, floor({_NOW} / %(interval)s)::bigint, {_NOW},
                           %(replica)s, {_NOW}
                    WHERE NOT EXISTS (
                        SELECT 1 FROM serve_triggers WHERE route = %(route)s
                          AND installation_id = %(inst)s
                          AND (accepted_at > {_NOW} - %(window)s
                               OR (ended_at IS NULL AND alive_at > {_NOW} - %(stale)s)))
                    ON CONFLICT (route, installation_id, interval_no) DO NOTHING
                    RETURNING trigger_id""", params)
            row = await cur.fetchone()
            if row is not None:
                return Acceptance("accepted", AcceptedTrigger(int(row[0]), route,
                                                              installation_id))
            cur = await conn.execute(
                f"""SELECT {_NOW} - max(accepted_at),
                           bool_or(ended_at IS NULL AND alive_at > {_NOW} - %(stale)s)
                    FROM serve_triggers WHERE route = %(route)s AND installation_id = %(inst)s""",
                params)
            why = await cur.fetchone()
        ago, running = why if why else (None, False)
        if ago is not None and ago < window_s:
            return Acceptance("duplicate", accepted_s_ago=round(float(ago), 1))
        if running:
            return Acceptance("running")
        # Neither: this interval's run was accepted already (its window was shorter).
        return Acceptance("duplicate", accepted_s_ago=round(float(ago or 0.0), 1))

    def begin(self, trigger_id: int) -> None:
        """This replica starts the accepted trigger's run: its heartbeat renews the row."""
        self._running.add(trigger_id)

    async def heartbeat(self) -> None:
        """Mark the runs that ended (a mark that failed is tried again here), and renew the
        rest. Only the runs this replica started: a row accepted but never started (the
        answer lost with the database) goes stale and blocks nothing for long."""
        async with pooled(self._pool) as conn:
            for trigger_id, outcome in list(self._ended.items()):
                await conn.execute(
                    f"UPDATE serve_triggers SET ended_at = {_NOW}, outcome = %s "
                    "WHERE trigger_id = %s", (outcome[:200], trigger_id))
                del self._ended[trigger_id]
            if self._running:
                await conn.execute(f"UPDATE serve_triggers SET alive_at = {_NOW} "
                                   "WHERE trigger_id = ANY(%s)", (sorted(self._running),))

    async def ended(self, trigger_id: int, outcome: str) -> None:
        """The run ended: marked now, or by the next heartbeat if the database is away."""
        self._running.discard(trigger_id)
        self._ended[trigger_id] = outcome
        with contextlib.suppress(psycopg.Error, PoolTimeout):
            await self.heartbeat()


async def _migrate(conn: psycopg.AsyncConnection[Any], where: str) -> None:
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s, 0)", (MIGRATION_LOCK,))
        cur = await conn.execute("SELECT to_regclass('serve_schema') IS NOT NULL")
        row = await cur.fetchone()
        version = 0
        if row and row[0]:
            cur = await conn.execute("SELECT version FROM serve_schema")
            found = await cur.fetchone()
            version = int(found[0]) if found else 0
        else:
            await conn.execute("CREATE TABLE serve_schema (version integer NOT NULL)")
            await conn.execute("INSERT INTO serve_schema VALUES (0)")
        if version > len(MIGRATIONS):
            raise newer_journal(where, version, len(MIGRATIONS))
        for step in MIGRATIONS[version:]:
            for statement in step:
                await conn.execute(statement)
        await conn.execute("UPDATE serve_schema SET version = %s", (len(MIGRATIONS),))


def _unreachable(url: str, exc: BaseException) -> JournalError:
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return JournalError(f"serve's database {safe_url(url)} can't be opened ({first}); check "
                        "that it is reachable, then start serve again")
