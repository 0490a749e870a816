"""Atlassian account IDs: the form checked on every row before anything is sent.

Real account IDs are 24 letters and digits (``5b10a2844c20165700ede21g``) or
``<6 digits>:<uuid>`` (``557058:f58131cb-b67d-43c7-b30d-6b58d40bd077``); the sandbox's synthetic
users are ``5ca1ab1e`` + 16 hex digits. Atlassian does not promise the forms stay these two, so
the check accepts any short token of letters, digits and ``:_-`` and rejects what is certainly
not an account ID: empty values, spaces, and e-mail addresses (the most common mistake).
"""

from __future__ import annotations

import re

_ACCOUNT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9:_-]{0,127}")

EXPECTED = "an Atlassian account ID (24 letters and digits, or 6 digits:UUID)"


def is_account_id(value: str) -> bool:
    """Whether ``value`` has the form of an Atlassian account ID."""
    return _ACCOUNT_ID.fullmatch(value) is not None


def account_id_problem(value: str) -> str | None:
    """None if ``value`` looks like an account ID, else what is wrong with it, for an error."""
    if is_account_id(value):
        return None
    if not value.strip():
        return f"expected {EXPECTED}, found an empty value"
    if "@" in value:
        return f"expected {EXPECTED}, found an e-mail address {value!r}"
    return f"expected {EXPECTED}, found {value!r}"
