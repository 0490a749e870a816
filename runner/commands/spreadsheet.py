"""CSV a spreadsheet opens without running anything: what ``report`` and ``export`` write."""

from __future__ import annotations

from typing import Any

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def inert(value: Any) -> Any:
    """A text value a spreadsheet would run as a formula (a row key ``=HYPERLINK(...)``),
    prefixed with ``'`` as spreadsheet exporters do; numbers and other values as they are."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value
