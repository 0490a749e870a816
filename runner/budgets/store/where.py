"""Which database a budgets setting names, and how a message may show it."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit


def is_url(location: str | Path) -> bool:
    """Whether the journal setting names a PostgreSQL database rather than a file."""
    return str(location).startswith(("postgresql://", "postgres://"))


def shown(location: str | Path) -> str:
    """``location`` as a message may show it: a URL without its password."""
    parts = urlsplit(str(location))
    if not is_url(location) or parts.password is None:
        return str(location)
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
