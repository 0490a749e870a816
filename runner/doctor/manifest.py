"""A Forge app's ``manifest.yml``: the parts forge-runner's checks read.

``load_manifest`` reads the scopes, endpoint modules, remotes and scheduled triggers, and stops
with ``ManifestError`` (file, key path, what was expected) when the file is not YAML or not
shaped like a manifest. The checks themselves are in ``runner.manifest_check``.

The manifest format, as Atlassian's manifest reference describes it (where the reference is
silent, the assumption is said where it is used):

    permissions:
      scopes:                        # a map when the app impersonates users
        'write:jira-work':
          allowImpersonation: true
        'read:app-system-token': {}
    modules:
      endpoint:
        - key: forge-runner          # other modules name it in their `endpoint:`
          remote: forge-runner       # a key of `remotes:`
          route: {path: /forge/events}
          auth:
            appSystemToken: {enabled: true}
      scheduledTrigger:
        - key: refresh-system-token
          endpoint: forge-runner     # `endpoint:` invokes the remote; `function:` does not
          interval: hour             # fiveMinute | hour | day | week
    remotes:
      - key: forge-runner
        baseUrl: https://forge-runner.example.com
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from runner.errors import ManifestError

ScopesForm = Literal["map", "list", "string", "missing"]


@dataclass(frozen=True)
class Endpoint:
    key: str
    remote: str | None
    system_token: Any  # the value of auth.appSystemToken.enabled (None when absent)
    user_token: Any  # the value of auth.appUserToken.enabled (None when absent)
    route: str | None = None  # route.path: where on the remote Forge invokes it

    @property
    def gets_system_token(self) -> bool:
        return self.system_token is True


@dataclass(frozen=True)
class ScheduledTrigger:
    key: str
    endpoint: str | None
    function: str | None
    interval: Any


@dataclass(frozen=True)
class Manifest:
    """The parts of a manifest the checks read."""

    path: Path
    scopes_form: ScopesForm
    # Map form: each scope's value. List or string form: each scope with None.
    scopes: Mapping[str, Any]
    endpoints: tuple[Endpoint, ...]
    remotes: tuple[str, ...]
    triggers: tuple[ScheduledTrigger, ...]


# -- reading ---------------------------------------------------------------------------------


def load_manifest(path: str | Path) -> Manifest:
    """Read a Forge manifest; ManifestError names the file, the key path and what was expected."""
    path = Path(path)

    def error(key: str, expected: str, found: str) -> ManifestError:
        return ManifestError(key, expected, found, file=path)

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error("(file)", "a readable manifest file", exc.strerror or str(exc)) from None
    except UnicodeDecodeError as exc:
        raise error("(file)", "UTF-8 text", str(exc)) from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise error("(file)", "valid YAML", _yaml_problem(exc)) from None
    expected = "a Forge manifest: a map with app, modules and permissions"
    if not isinstance(doc, dict):
        raise error("(top level)", expected, describe(doc))
    if not {"app", "modules", "permissions"} & set(doc):
        keys = ", ".join(str(k) for k in doc) or "none"
        raise error("(top level)", expected, f"only the keys {keys}")
    permissions = _map(doc, "permissions", "permissions", error)
    form, scopes = _scopes(permissions, error)
    modules = _map(doc, "modules", "modules", error)
    endpoints = tuple(_endpoint(m, f"modules.endpoint[{i}]", error)
                      for i, m in enumerate(_maps(modules, "endpoint", "modules.endpoint", error)))
    triggers = tuple(
        _trigger(m, f"modules.scheduledTrigger[{i}]", error)
        for i, m in enumerate(_maps(modules, "scheduledTrigger", "modules.scheduledTrigger", error))
    )
    remotes = tuple(_string(m, "key", f"remotes[{i}]", error, required=True) or ""
                    for i, m in enumerate(_maps(doc, "remotes", "remotes", error)))
    return Manifest(path, form, scopes, endpoints, remotes, triggers)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is not None:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return str(problem)


def describe(value: Any) -> str:
    if value is None:
        return "nothing"
    kinds = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
             list: "a list", dict: "a map"}
    kind = kinds.get(type(value), type(value).__name__)
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{kind} {text}"


ErrorFactory = Callable[[str, str, str], ManifestError]  # (key, expected, found)


def _map(parent: Mapping[str, Any], name: str, key: str, error: ErrorFactory) -> dict[str, Any]:
    value = parent.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise error(key, "a map", describe(value))
    return value


def _maps(parent: Mapping[str, Any], name: str, key: str, error: ErrorFactory
          ) -> list[dict[str, Any]]:
    value = parent.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise error(key, "a list of maps", describe(value))
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise error(f"{key}[{i}]", "a map", describe(item))
    return value


def _string(parent: Mapping[str, Any], name: str, key: str, error: ErrorFactory, *,
            required: bool = False) -> str | None:
    value = parent.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise error(f"{key}.{name}", "a non-empty string", describe(value))
    return value


def _scopes(permissions: Mapping[str, Any], error: ErrorFactory
            ) -> tuple[ScopesForm, dict[str, Any]]:
    value = permissions.get("scopes")
    if value is None:
        return "missing", {}
    if isinstance(value, str):
        return "string", {value: None}
    if isinstance(value, list):
        found: dict[str, Any] = {}
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise error(f"permissions.scopes[{i}]", "a scope name", describe(item))
            found[item] = None
        return "list", found
    if isinstance(value, dict):
        for name in value:
            if not isinstance(name, str):
                raise error("permissions.scopes", "scope names as keys", describe(name))
        return "map", dict(value)
    raise error("permissions.scopes", "a map of scopes (or a list)", describe(value))


def _enabled(auth: Mapping[str, Any], name: str, key: str, error: ErrorFactory) -> Any:
    token = auth.get(name)
    if token is None:
        return None
    if not isinstance(token, dict):
        raise error(f"{key}.{name}", "a map with enabled", describe(token))
    return token.get("enabled")


def _endpoint(m: Mapping[str, Any], key: str, error: ErrorFactory) -> Endpoint:
    name = _string(m, "key", key, error, required=True) or ""
    remote = _string(m, "remote", key, error)
    auth = _map(m, "auth", f"{key}.auth", error)
    route = _string(_map(m, "route", f"{key}.route", error), "path", f"{key}.route", error)
    return Endpoint(name, remote, _enabled(auth, "appSystemToken", f"{key}.auth", error),
                    _enabled(auth, "appUserToken", f"{key}.auth", error), route)


def _trigger(m: Mapping[str, Any], key: str, error: ErrorFactory) -> ScheduledTrigger:
    return ScheduledTrigger(
        _string(m, "key", key, error, required=True) or "",
        _string(m, "endpoint", key, error),
        _string(m, "function", key, error),
        m.get("interval"),
    )
