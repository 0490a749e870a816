"""Token redaction that is always on: exact secrets and secret-shaped patterns become [REDACTED].

No token may reach a log line, the journal, a report or an error (design principle 6), so
redaction does not depend on callers:

1. exact secrets: every system and user token is handed to ``register_secret`` the moment it is
   read or minted; any occurrence, anywhere in an event (nested values, dict keys, exception
   text, stdlib records), becomes ``[REDACTED]``;
2. patterns: ``Bearer <anything>``, JWT-shaped strings, and the values of sensitive keys
   (``token``, ``authorization``, ``x-forge-oauth-system``, ``system_token``, ``password``,
   ``secret``...) whether they are event keys, nested dict keys or ``key=value`` text.

``redact_event`` is the structlog processor (``runner.logs.setup`` puts it in every chain);
``redact`` and ``redact_value`` are for every other writer: reports, console summaries, the
journal's texts, errors the CLI prints.
"""


from __future__ import annotations

import re
import threading
from collections import deque
from collections.abc import Mapping
from typing import Any

from structlog.typing import EventDict, WrappedLogger

REDACTED = "[REDACTED]"

# Shorter values would turn ordinary words into [REDACTED]; every real token is far longer.
MIN_SECRET_LENGTH = 6

SENSITIVE_KEYS = frozenset(
    {
        "token",
        "authorization",
        "x-forge-oauth-system",
        "x-forge-oauth-user",
        "system_token",
        "user_token",
        "access_token",
        "refresh_token",
        "auth_token",
        "password",
        "secret",
    }
)

_BEARER = re.compile(r"(?i)\b(bearer)\s+(?!\[REDACTED\])[^\s\"',;]+")
# header.payload.signature, both JSON parts base64url of "{"..." (the signature may be empty).
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_KEY_VALUE = re.compile(
    r"(?i)(?<![\w-])(?P<key>"
    + "|".join(re.escape(k) for k in sorted(SENSITIVE_KEYS, key=len, reverse=True))
    + r")(?![\w-])(?P<sep>[\"']?\s*[:=]\s*)"
    r"(?!bearer\s)(?!\[REDACTED\])"
    r"(?P<value>\"[^\"]*\"|'[^']*'|[^\s\"',;&}\]]+)"
)
_NESTING_LIMIT = 8


# Characters a token is made of (base64url, JWT dots). Text is cut into runs of these; a
# registered token lies inside one run, so only runs at least as long as the shortest secret
# are ever looked at, character by character, and only when the run is not a secret itself.
_TOKEN_CHARS = "A-Za-z0-9._~-"
_ANCHOR = MIN_SECRET_LENGTH


class _SecretSet:
    """Registered secrets, looked up in time that does not grow with how many there are.

    A set answers "is this run a secret"; an index from each secret's first characters to the
    lengths of secrets starting with them finds secrets embedded in longer runs. Secrets with
    characters outside ``_TOKEN_CHARS`` (rare) go into one alternation compiled lazily.
    Registration may come from any thread; reads take no lock (each update replaces a value
    atomically).

    Memory follows concurrency, not job size: past ``limit`` secrets the oldest is forgotten.
    The limit is far above the tokens alive at once (the token cache holds at most 10,000), and a
    token that has left the cache is no longer in any request or answer to be logged.
    """

    def __init__(self, limit: int = 50_000) -> None:
        self._lock = threading.Lock()
        self._limit = limit
        self._order: deque[str] = deque()
        self._by_anchor: dict[str, set[str]] = {}
        self._exact: set[str] = set()
        self._anchors: dict[str, tuple[int, ...]] = {}
        self._min_len = 0
        self._runs: re.Pattern[str] | None = None
        self._odd: set[str] = set()
        self._odd_pattern: re.Pattern[str] | None = None

    def add(self, value: str) -> None:
        if len(value) < MIN_SECRET_LENGTH:
            return
        with self._lock:
            if value in self._exact or value in self._odd:
                return
            if _ODD_CHAR.search(value):
                self._odd.add(value)
                self._odd_pattern = None
                return
            anchor = value[:_ANCHOR]
            self._by_anchor.setdefault(anchor, set()).add(value)
            self._index(anchor)
            self._exact.add(value)
            self._order.append(value)
            while len(self._order) > self._limit:
                self._forget(self._order.popleft())
            if not self._min_len or len(value) < self._min_len:
                self._min_len = len(value)
                self._runs = re.compile(f"[{_TOKEN_CHARS}]{{{self._min_len},}}")

    def _index(self, anchor: str) -> None:
        values = self._by_anchor.get(anchor)
        if values:
            self._anchors[anchor] = tuple(sorted({len(v) for v in values}, reverse=True))
        else:
            self._by_anchor.pop(anchor, None)
            self._anchors.pop(anchor, None)

    def _forget(self, value: str) -> None:
        self._exact.discard(value)
        anchor = value[:_ANCHOR]
        self._by_anchor.get(anchor, set()).discard(value)
        self._index(anchor)

    def __len__(self) -> int:
        return len(self._exact) + len(self._odd)

    def clear(self) -> None:
        with self._lock:
            self._order = deque()
            self._by_anchor = {}
            self._exact = set()
            self._anchors = {}
            self._min_len = 0
            self._runs = None
            self._odd = set()
            self._odd_pattern = None

    def sub(self, text: str) -> str:
        runs = self._runs
        if runs is not None:
            text = runs.sub(self._redact_run, text)
        if self._odd:
            pattern = self._odd_pattern
            if pattern is None:
                with self._lock:
                    ordered = sorted(self._odd, key=len, reverse=True)
                    pattern = re.compile("|".join(re.escape(s) for s in ordered))
                    self._odd_pattern = pattern
            text = pattern.sub(REDACTED, text)
        return text

    def _redact_run(self, match: re.Match[str]) -> str:
        run = match.group()
        exact = self._exact
        if run in exact:
            return REDACTED
        anchors = self._anchors
        pieces: list[str] = []
        kept = 0
        i = 0
        last = len(run) - self._min_len
        while i <= last:
            lengths = anchors.get(run[i : i + _ANCHOR])
            if lengths:
                # Longest first: a secret that extends another must hide all of itself.
                found = next((n for n in lengths if run[i : i + n] in exact), 0)
                if found:
                    pieces.append(run[kept:i])
                    pieces.append(REDACTED)
                    i += found
                    kept = i
                    continue
            i += 1
        if not pieces:
            return run
        pieces.append(run[kept:])
        return "".join(pieces)


_ODD_CHAR = re.compile(f"[^{_TOKEN_CHARS}]")
_secrets = _SecretSet()


def register_secret(value: str | None) -> None:
    """Redact ``value`` wherever it appears from now on (logs, reports, printed errors)."""
    if value:
        _secrets.add(value)


def clear_secrets() -> None:
    """Forget every registered secret (for tests that check registration itself)."""
    _secrets.clear()


def redact(text: str) -> str:
    """``text`` with registered secrets, bearer credentials, JWTs and key=secret values hidden."""
    text = _secrets.sub(text)
    # The pattern passes are costly on long text (tracebacks); substring checks skip them.
    if "eyJ" in text:
        text = _JWT.sub(REDACTED, text)
    lowered = text.lower()
    if "bearer" in lowered:
        text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    if any(key in lowered for key in SENSITIVE_KEYS):
        text = _KEY_VALUE.sub(_redact_key_value, text)
    return text


# ``system_token:dev`` is the scope of an environment's system-token wait (runner.progress),
# named after the environment: a name, not a secret. A system token is a JWT (hidden by its
# shape) and registered as a secret the moment it is read, so only a config name is kept.
_SCOPE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _redact_key_value(match: re.Match[str]) -> str:
    value = match.group("value")
    if (match.group("key").lower() == "system_token" and match.group("sep") == ":"
            and _SCOPE_NAME.fullmatch(value)):
        return match.group()
    quote = value[0] if value[:1] in ("'", '"') else ""
    return f"{match.group('key')}{match.group('sep')}{quote}{REDACTED}{quote}"


def _is_sensitive(key: object) -> bool:
    return isinstance(key, str) and key.lower() in SENSITIVE_KEYS


def redact_value(value: Any, _depth: int = 0) -> Any:
    """A copy of ``value`` with every string redacted and sensitive keys' values hidden.

    Containers are rebuilt (dicts, lists, tuples, sets); other objects are kept as they are
    unless their ``repr`` would show a secret, in which case the redacted text replaces them.
    """
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if _depth >= _NESTING_LIMIT:
        return redact(repr(value))
    if isinstance(value, Mapping):
        return {
            (redact(k) if isinstance(k, str) else k): (
                REDACTED if _is_sensitive(k) and v is not None else redact_value(v, _depth + 1)
            )
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        items = [redact_value(v, _depth + 1) for v in value]
        if isinstance(value, list):
            return items
        if isinstance(value, tuple) and hasattr(value, "_fields"):  # a namedtuple
            return type(value)(*items)
        return type(value)(items)
    if isinstance(value, bytes | bytearray):
        text = bytes(value).decode("utf-8", errors="replace")
        cleaned = redact(text)
        return value if cleaned == text else cleaned
    if isinstance(value, BaseException):
        text = f"{type(value).__name__}: {value}"
        cleaned = redact(text)
        return value if cleaned == text else cleaned
    text = repr(value)
    cleaned = redact(text)
    return value if cleaned == text else cleaned


def redact_event(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """structlog processor: hide secrets in every key and value of the event."""
    out: EventDict = {}
    for key, value in event_dict.items():
        if _is_sensitive(key) and value is not None:
            out[key] = REDACTED
        else:
            out[key] = redact_value(value)
    return out
