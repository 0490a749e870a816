"""The PostgreSQL journal's tables, migrated forward when a journal is opened.

The journal's own tables only: ``journal_schema`` (its version), ``runs``, ``items`` and
``locks`` (who holds a job, for the message a second process prints; the lock itself is a
session advisory lock, ``postgres.py``). Other parts keep their tables, and their versions, in
their own modules.

Version 2 adds what several workers share a run by (``runner/cluster``): ``workers`` (one row
per process start), ``run_rows`` (a run's rows, loaded once by the process that starts it, so
no other host needs the job's data file), ``lanes`` (one user of one run on one site: the unit
a worker leases, with its owner, fence and lease judged by the database's clock), ``flows``
(one per run and site: the virtual time of weighted fair claiming) and ``items.fence`` (the
fence under which an item's last write was accepted). Version 3 adds ``runs.placed``: the
installation's site a run of a job template was placed on (``runner.cluster.placed``).

``items`` is written with fillfactor 80: every item is inserted once and updated a few times
(started, then done), and room on the page lets an update stay on it. Counts by state are read
from the ``(run_id, state, ...)`` index rather than kept in a counts row, which every mark of a
run would update (one hot row, a dead tuple per mark).
"""

from __future__ import annotations

from typing import Any, LiteralString

from psycopg import AsyncConnection

from runner.journal.schema import newer_journal

# Advisory lock classes (the first key of the two-key form), so they can't collide with
# another part's locks in the same database: the schema's migration, and a job's lock.
MIGRATION_LOCK = 0x46520001
JOB_LOCK_CLASS = 0x46520002

# Each step moves the schema from version ``n - 1`` to ``n`` (index ``n - 1``). Add a step to
# change the schema; never edit one that has shipped.
MIGRATIONS: list[tuple[LiteralString, ...]] = [
    (
        """CREATE TABLE runs (
            run_id text PRIMARY KEY,
            job_name text NOT NULL,
            job_path text NOT NULL,
            job_fingerprint text NOT NULL,
            config_fingerprint text NOT NULL,
            job_text text NOT NULL,
            started_at double precision NOT NULL,
            ended_at double precision,
            state text NOT NULL,
            total_items bigint,
            holder text NOT NULL,
            seq bigserial NOT NULL
        )""",
        "CREATE INDEX runs_by_job ON runs (job_path, started_at, seq)",
        "CREATE INDEX runs_by_start ON runs (started_at, seq)",
        """CREATE TABLE items (
            run_id text NOT NULL REFERENCES runs (run_id),
            row_key text COLLATE "C" NOT NULL,
            action_index integer NOT NULL,
            action text NOT NULL,
            state text NOT NULL,
            attempts integer NOT NULL,
            reason text,
            detail text,
            result text,
            site text NOT NULL,
            account_id text NOT NULL,
            updated_at double precision NOT NULL,
            PRIMARY KEY (run_id, row_key, action_index)
        ) WITH (fillfactor = 80)""",
        # report, requeue, retry --failed and the counts read one state of one run
        "CREATE INDEX items_by_state ON items (run_id, state, row_key, action_index)",
        """CREATE TABLE locks (
            job_path text PRIMARY KEY,
            holder text NOT NULL,
            owner text NOT NULL,
            taken_at timestamptz NOT NULL DEFAULT now()
        )""",
    ),
    (
        "ALTER TABLE runs ADD COLUMN lanes boolean NOT NULL DEFAULT false",
        "ALTER TABLE runs ADD COLUMN loaded boolean NOT NULL DEFAULT false",
        "ALTER TABLE runs ADD COLUMN columns text",
        "ALTER TABLE items ADD COLUMN fence bigint",
        """CREATE TABLE workers (
            id text PRIMARY KEY,
            host text NOT NULL,
            pid integer NOT NULL,
            proc_start text NOT NULL,
            started_at timestamptz NOT NULL DEFAULT now(),
            heartbeat_at timestamptz NOT NULL DEFAULT now(),
            stopped_at timestamptz
        )""",
        """CREATE TABLE run_rows (
            run_id text NOT NULL REFERENCES runs (run_id),
            row_key text COLLATE "C" NOT NULL,
            seq bigint NOT NULL,
            site text NOT NULL,
            account_id text NOT NULL,
            line integer NOT NULL,
            fields text NOT NULL,
            PRIMARY KEY (run_id, row_key)
        )""",
        "CREATE INDEX run_rows_by_lane ON run_rows (run_id, site, account_id, seq)",
        """CREATE TABLE lanes (
            run_id text NOT NULL REFERENCES runs (run_id),
            site text NOT NULL,
            account_id text NOT NULL,
            state text NOT NULL,
            owner text,
            fence bigint NOT NULL DEFAULT 0,
            lease_until timestamptz,
            lease_s double precision NOT NULL DEFAULT 0,
            rows integer NOT NULL,
            first_seq bigint NOT NULL,
            PRIMARY KEY (run_id, site, account_id)
        ) WITH (fillfactor = 70)""",
        "CREATE INDEX lanes_open ON lanes (run_id, site, first_seq) WHERE state <> 'done'",
        "CREATE INDEX lanes_by_owner ON lanes (owner) WHERE state = 'held'",
        """CREATE TABLE flows (
            run_id text NOT NULL REFERENCES runs (run_id),
            site text NOT NULL,
            weight double precision NOT NULL,
            vtime double precision NOT NULL,
            PRIMARY KEY (run_id, site)
        )""",
    ),
    (
        # A run serve started from a job template: the installation's site it was placed on
        # (JSON, no secret), so any worker can rebuild its job and read its sealed token.
        "ALTER TABLE runs ADD COLUMN placed text",
    ),
]


def schema_version() -> int:
    return len(MIGRATIONS)


async def ensure_schema(conn: AsyncConnection[tuple[Any, ...]], *, create: bool,
                        where: str) -> bool:
    """Migrate the journal's tables forward to this code's version, in one transaction.

    Returns False when the database holds no journal and ``create`` is False (nothing is made).
    Raises JournalError for a journal newer than this code.
    """
    async with conn.transaction():
        # Two processes opening a new database at once: the second waits, then finds it done.
        await conn.execute("SELECT pg_advisory_xact_lock(%s, 0)", (MIGRATION_LOCK,))
        cur = await conn.execute("SELECT to_regclass('journal_schema') IS NOT NULL")
        row = await cur.fetchone()
        exists = bool(row and row[0])
        version = 0
        if exists:
            cur = await conn.execute("SELECT version FROM journal_schema")
            row = await cur.fetchone()
            version = int(row[0]) if row else 0
        elif not create:
            return False
        latest = schema_version()
        if version > latest:
            raise newer_journal(where, version, latest)
        if version == latest:
            return True
        if not exists:
            await conn.execute("CREATE TABLE journal_schema (version integer NOT NULL)")
            await conn.execute("INSERT INTO journal_schema VALUES (0)")
        for step in MIGRATIONS[version:]:
            for statement in step:
                await conn.execute(statement)
        await conn.execute("UPDATE journal_schema SET version = %s", (latest,))
    return True
