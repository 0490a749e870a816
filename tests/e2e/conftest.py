"""The journal each end-to-end rehearsal runs on: the SQLite file, and PostgreSQL."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["sqlite", "postgres"])
def journal_url(request: pytest.FixtureRequest) -> str | None:
    """None for the SQLite journal beside the config; a PostgreSQL database's URL (a database
    of the test's own) for the PostgreSQL journal."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("pg_url")
        return url
    return None
