"""The error hierarchy: the tree drawn in runner.errors' docstring is the classes' own."""

from __future__ import annotations

import inspect
import re

from runner import errors
from runner.errors import ConfigError, FieldError, ManifestError


def test_docstring_tree_matches_the_classes() -> None:
    """Every error class is drawn in the tree exactly once, under its own base class."""
    drawn: dict[str, str] = {}
    parents: list[str] = []
    for line in (errors.__doc__ or "").splitlines():
        match = re.match(r"^    ([│├└─ ]*)(\w+Error)\b", line)
        if not match:
            continue
        depth = len(match.group(1)) // 4
        del parents[depth:]
        drawn[match.group(2)] = parents[-1] if parents else "Exception"
        parents.append(match.group(2))
    classes = {name: cls.__bases__[0].__name__
               for name, cls in inspect.getmembers(errors, inspect.isclass)
               if issubclass(cls, Exception) and cls.__module__ == errors.__name__}
    assert drawn == classes


def test_config_and_manifest_errors_share_the_field_message() -> None:
    """ConfigError and ManifestError are FieldErrors: same fields, same 'file: key: expected
    X, found Y' message."""
    for cls in (ConfigError, ManifestError):
        exc = cls("a.b", "an integer", "'x'", file="f.toml")
        assert isinstance(exc, FieldError)
        fields = (exc.key, exc.expected, exc.found, exc.file)
        assert fields == ("a.b", "an integer", "'x'", "f.toml")
        assert str(exc) == "f.toml: a.b: expected an integer, found 'x'"
        assert str(cls("k", "e", "f")) == "k: expected e, found f"
