"""Reading parsed TOML tables with errors that name the key's path and what was expected.

Config files and job files are read through ``Table``: each typed getter records the key as
known, and ``done()`` rejects every key nobody asked for, so a typo (``mint_limt``) is an error
naming ``environments.dev.mint_limt`` instead of a silently ignored setting.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final, TypeVar, overload

from runner.errors import InputError

# (key path, expected, found) -> the error to raise: ConfigError for configs, JobError for jobs.
ErrorFactory = Callable[[str, str, str], InputError]

# The type of a getter's default: what an absent key gives instead of the getter's own type.
D = TypeVar("D")


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


# No default given: the key is required. Typed as Any so a caller can pass it on as a default.
MISSING: Final[Any] = _Missing()


def describe(value: Any) -> str:
    """A short account of a found value for an error message (never the whole of a big one)."""
    kinds = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
    }
    kind = kinds.get(type(value), type(value).__name__)
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({kind})" if not isinstance(value, dict | list) else f"{kind} {text}"


def excerpt(text: str, limit: int = 80) -> str:
    """At most ``limit`` characters of ``text`` (then "…"): a message quotes the start of a
    line that turned out not to be what was expected, never the whole of it."""
    return text if len(text) <= limit else text[:limit] + "…"


class Table:
    """One table of a parsed TOML document, at key path ``path`` ("" for the document)."""

    def __init__(self, data: Mapping[str, Any], path: str, error: ErrorFactory):
        self.data = data
        self.path = path
        self.make_error = error
        self._used: set[str] = set()

    def key(self, name: str) -> str:
        """The dotted path of ``name`` in this table."""
        return f"{self.path}.{name}" if self.path else name

    def error(self, name: str, expected: str, found: str) -> InputError:
        return self.make_error(self.key(name), expected, found)

    def __contains__(self, name: str) -> bool:
        return name in self.data

    def keys(self) -> Iterator[str]:
        return iter(self.data)

    def raw(self, name: str, default: Any = MISSING, *, expected: str = "a value") -> Any:
        """The value as parsed, any type; marks the key as known."""
        self._used.add(name)
        if name in self.data:
            return self.data[name]
        if default is MISSING:
            raise self.error(name, expected, "nothing (the key is missing)")
        return default

    def _typed(self, name: str, default: object, expected: str, ok: Callable[[Any], bool]) -> Any:
        value = self.raw(name, default, expected=expected)
        if value is default and name not in self.data:
            return value
        if not ok(value):
            raise self.error(name, expected, describe(value))
        return value

    # Each getter: without ``default`` the key is required and the value has the getter's type;
    # with one, an absent key gives ``default`` (so ``None`` makes the result optional).

    @overload
    def string(self, name: str, *, expected: str = ...) -> str: ...
    @overload
    def string(self, name: str, default: D, *, expected: str = ...) -> str | D: ...

    def string(self, name: str, default: object = MISSING, *, expected: str = "a string"
               ) -> object:
        """A string value (``default`` when absent; missing and no default is an error)."""
        return self._typed(name, default, expected, lambda v: isinstance(v, str))

    @overload
    def nonempty(self, name: str, *, expected: str = ...) -> str: ...
    @overload
    def nonempty(self, name: str, default: D, *, expected: str = ...) -> str | D: ...

    def nonempty(self, name: str, default: object = MISSING, *, expected: str = "a string"
                 ) -> object:
        return self._typed(
            name, default, f"{expected} (not empty)", lambda v: isinstance(v, str) and v != ""
        )

    @overload
    def boolean(self, name: str) -> bool: ...
    @overload
    def boolean(self, name: str, default: D) -> bool | D: ...

    def boolean(self, name: str, default: object = MISSING) -> object:
        return self._typed(name, default, "true or false", lambda v: isinstance(v, bool))

    @overload
    def integer(self, name: str, *, minimum: int | None = ...) -> int: ...
    @overload
    def integer(self, name: str, default: D, *, minimum: int | None = ...) -> int | D: ...

    def integer(self, name: str, default: object = MISSING, *, minimum: int | None = None
                ) -> object:
        expected = "an integer" if minimum is None else f"an integer >= {minimum}"
        return self._typed(
            name,
            default,
            expected,
            lambda v: isinstance(v, int)
            and not isinstance(v, bool)
            and (minimum is None or v >= minimum),
        )

    @overload
    def number(self, name: str, *, minimum: float | None = ..., positive: bool = ...
               ) -> float: ...
    @overload
    def number(self, name: str, default: D, *, minimum: float | None = ...,
               positive: bool = ...) -> float | D: ...

    def number(
        self, name: str, default: object = MISSING, *, minimum: float | None = None,
        positive: bool = False,
    ) -> object:
        """A number, as a float (an integer in the file is accepted)."""
        expected = "a number"
        if positive:
            expected = "a number > 0"
        elif minimum is not None:
            expected = f"a number >= {minimum}"

        def ok(v: Any) -> bool:
            if not isinstance(v, int | float) or isinstance(v, bool) or v != v:
                return False
            return not (positive and v <= 0) and not (minimum is not None and v < minimum)

        value = self._typed(name, default, expected, ok)
        return float(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @overload
    def strings(self, name: str, *, nonempty: bool = ...) -> tuple[str, ...]: ...
    @overload
    def strings(self, name: str, default: D, *, nonempty: bool = ...
                ) -> tuple[str, ...] | D: ...

    def strings(self, name: str, default: object = MISSING, *, nonempty: bool = False
                ) -> object:
        """A list of strings, as a tuple."""
        expected = "a non-empty list of strings" if nonempty else "a list of strings"
        value = self._typed(
            name,
            default,
            expected,
            lambda v: isinstance(v, list)
            and all(isinstance(x, str) for x in v)
            and (not nonempty or len(v) > 0),
        )
        return tuple(value) if isinstance(value, list) else value

    def table(self, name: str, *, required: bool = False) -> Table:
        """A sub-table; an empty one when absent and not required."""
        value = self.raw(name, MISSING if required else {}, expected="a table")
        if not isinstance(value, dict):
            raise self.error(name, "a table", describe(value))
        return Table(value, self.key(name), self.make_error)

    def tables(self, name: str) -> Iterator[tuple[str, Table]]:
        """The sub-tables of table ``name`` (``[environments.dev]``, ...), by their names."""
        outer = self.table(name)
        for sub in list(outer.data):
            yield sub, outer.table(sub)
        outer.done()

    def table_list(self, name: str) -> list[Table]:
        """An array of tables (``[[actions]]``), each at ``name[i]``."""
        value = self.raw(name, [], expected="an array of tables")
        if not isinstance(value, list):
            raise self.error(name, "an array of tables", describe(value))
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                raise self.make_error(f"{self.key(name)}[{i}]", "a table", describe(item))
            out.append(Table(item, f"{self.key(name)}[{i}]", self.make_error))
        return out

    def done(self) -> None:
        """Reject the first key (in sorted order) that no getter asked for."""
        unknown = sorted(set(self.data) - self._used)
        if unknown:
            known = ", ".join(sorted(self._used)) or "no keys"
            raise self.error(unknown[0], f"one of the known keys ({known})", "an unknown key")
