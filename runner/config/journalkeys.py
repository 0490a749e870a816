"""``[runner] journal`` and ``journal_url_env``: which journal, a file or a PostgreSQL URL;
``[runner] budgets``: where the shared budgets live when not in the journal's database."""

from __future__ import annotations

import os
from pathlib import Path

from runner.config.tables import Table

PG_SCHEMES = ("postgresql://", "postgres://")


def journal_keys(t: Table, default: str) -> tuple[str | None, str | None, str | None]:
    """(file, url, url_env): the journal file as written (None for a URL), the PostgreSQL URL
    (from ``journal`` or the variable ``journal_url_env`` names), and that variable's name.

    The URL is read when the config is loaded, so a variable that is not set is a config error
    (exit 2) before anything starts; it is never shown (it may hold a password)."""
    journal = t.nonempty("journal", default, expected="a file path or a postgresql:// URL")
    url_env = t.nonempty("journal_url_env", None, expected="an environment variable's name")
    if url_env is None:
        if journal.startswith(PG_SCHEMES):
            return None, journal, None
        return journal, None, None
    if "journal" in t:
        raise t.error("journal_url_env", "either journal or journal_url_env, not both",
                      f"journal_url_env = {url_env!r} beside journal")
    url = os.environ.get(url_env)
    if not url or not url.startswith(PG_SCHEMES):
        found = "not set" if not url else "set to something else"
        raise t.error("journal_url_env", f"the name of a variable holding a postgresql:// URL "
                      f"({url_env} is {found})", repr(url_env))
    return None, url, url_env


def budgets_key(t: Table, base: Path) -> Path | str | None:
    """``[runner] budgets``: where the shared budgets live when not in the journal's database
    (a path, relative to the config's folder, or a PostgreSQL URL)."""
    value = t.nonempty("budgets", None, expected="a file path or a postgresql:// URL")
    if value is None or value.startswith(("postgresql://", "postgres://")):
        return value
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p
