"""Checking a request's parameters and body before Jira acts on it, as Jira's spec describes.

Two validators, one verdict: ``SpecValidator`` uses the real OpenAPI spec through openapi-core
(when ``spec_dir`` is configured); ``OwnValidator`` uses the project's schemas (``schemas.py``)
and needs no file. Security is not checked here: the bearer token is the pipeline's business,
and openapi-core's security check only warns about the spec's OAuth2 scheme.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import jsonschema
from jsonschema import FormatChecker
from multidict import MultiMapping

from runner.errors import ConfigError
from runner.sandbox.jira.schemas import ENDPOINTS

SPEC_FILE = "jira-platform-openapi.json"
# The spec's only server; requests are mapped onto it so openapi-core finds their paths.
SPEC_SERVER = "https://your-domain.atlassian.net"
# Jira writes offsets without a colon (2021-01-17T12:34:00.000+0000) and expects them back;
# RFC 3339 (what "date-time" means to a JSON Schema checker) has one. Both are accepted.
_DATE_TIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:?\d{2})$"
)
# openapi-core's truth values for boolean query parameters.
_TRUE = ("y", "yes", "t", "true", "on", "1")
_FALSE = ("n", "no", "f", "false", "off", "0")


def is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    match = _DATE_TIME.match(value)
    if match is None:
        return False
    try:
        date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        return False
    return True


def _in_range(bits: int) -> Any:
    def check(value: object) -> bool:
        return not isinstance(value, int) or -(2 ** (bits - 1)) <= value < 2 ** (bits - 1)

    return check


FORMATS: dict[str, Callable[[Any], bool]] = {"date-time": is_date_time}


@dataclass(frozen=True)
class Invalid:
    """Why a request was refused: Jira's ``errorMessages`` and per-field ``errors``."""

    status: int  # 400, or 415 for a body that isn't JSON
    messages: tuple[str, ...]
    errors: dict[str, str] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return {"errorMessages": list(self.messages), "errors": self.errors}


class Validator(Protocol):
    def check(
        self, route_name: str, path: str, query: MultiMapping[str], body: bytes,
        content_type: str,
    ) -> Invalid | None:
        """``route_name`` is "METHOD /rest/api/3/template"; ``path`` the concrete path."""


# -- the project's own schemas ---------------------------------------------------------------

def _read_only(validator: Any, is_read_only: Any, instance: Any, schema: Any) -> Any:
    if is_read_only:
        yield jsonschema.ValidationError(f"Tried to write read-only property with {instance}")


_OwnDraft = jsonschema.validators.extend(
    jsonschema.Draft4Validator, {"readOnly": _read_only}
)
_checker = FormatChecker(())
_checker.checks("date-time")(is_date_time)
_checker.checks("int32")(_in_range(32))
_checker.checks("int64")(_in_range(64))


def _field_errors(errors: Iterable[Any], where: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for error in errors:
        path = ".".join(str(p) for p in getattr(error, "absolute_path", ()) or ())
        out.setdefault(path or where, str(getattr(error, "message", error)))
    return out


class OwnValidator:
    def check(
        self, route_name: str, path: str, query: MultiMapping[str], body: bytes,
        content_type: str,
    ) -> Invalid | None:
        endpoint = ENDPOINTS[route_name]
        errors: dict[str, str] = {}
        for name, schema in endpoint["query"].items():
            values = query.getall(name, [])
            if not values:
                continue
            try:
                value = _cast(schema, values)
            except ValueError:
                errors[name] = f"Query parameter error: {name}"
                continue
            problems = list(_OwnDraft(schema, format_checker=_checker).iter_errors(value))
            if problems:
                errors[name] = f"Invalid query parameter: {name}: {problems[0].message}"
        if errors:
            return Invalid(400, ("Invalid request parameters.",), errors)
        if "body" not in endpoint:
            return None
        parsed = _parse_body(body, content_type)
        if isinstance(parsed, Invalid):
            return parsed
        validator = _OwnDraft(endpoint["body"], format_checker=_checker)
        problems = list(validator.iter_errors(parsed))
        if problems:
            errors = _field_errors(problems, "body")
            return Invalid(400, ("Request body validation error.",), errors)
        return None


def _cast(schema: Mapping[str, Any], values: list[str]) -> Any:
    """A query value as openapi-core casts it (form style, exploded arrays)."""
    if schema.get("type") == "array":
        return [_cast(schema["items"], [v]) for v in values]
    value = values[0]
    if schema.get("type") == "integer":
        return int(value)
    if schema.get("type") == "boolean":
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        raise ValueError(value)
    return value


def _parse_body(body: bytes, content_type: str) -> Any:
    if not body:
        return Invalid(400, ("Missing required request body",))
    if content_type.split(";")[0].strip().lower() != "application/json":
        return Invalid(415, (f"Unsupported media type: {content_type or 'none'}",))
    try:
        return json.loads(body)
    except ValueError as exc:
        return Invalid(400, (f"Unexpected character in the request body: {exc}",))


# -- the real spec, through openapi-core ----------------------------------------------------

@lru_cache(maxsize=4)
def load_spec(path: Path) -> dict[str, Any]:
    """The parsed spec, once per process (it is 2.4 MB and takes most of a second)."""
    with path.open("rb") as f:
        loaded: dict[str, Any] = json.load(f)
    return loaded


@lru_cache(maxsize=4)
def _spec_validators(path: Path) -> tuple[Any, Any]:
    from jsonschema_path import SchemaPath
    from openapi_core.validation.request.validators import (
        V30RequestBodyValidator,
        V30RequestParametersValidator,
    )

    full = load_spec(path)
    # Only the served paths, verbatim with all the components they refer to: openapi-core
    # looks a request's path up by trying every path in turn, which over the spec's 400-odd
    # paths costs ~10 ms a request. Requests for other paths never get here (404 before).
    served = {name.split(" ", 1)[1] for name in ENDPOINTS}
    spec = SchemaPath.from_dict({**full, "paths": {p: full["paths"][p] for p in served}})
    return (
        V30RequestParametersValidator(
            spec, base_url=SPEC_SERVER, extra_format_validators=FORMATS
        ),
        V30RequestBodyValidator(spec, base_url=SPEC_SERVER, extra_format_validators=FORMATS),
    )


class _SpecRequest:
    """A request as openapi-core's ``Request`` protocol wants it."""

    def __init__(
        self, method: str, path: str, query: MultiMapping[str], body: bytes, content_type: str
    ) -> None:
        from openapi_core.datatypes import RequestParameters
        from werkzeug.datastructures import Headers, ImmutableMultiDict

        self.host_url = SPEC_SERVER
        self.path = path
        self.method = method.lower()
        self.body = body or None
        self.content_type = content_type or "application/json"
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(list(query.items())), header=Headers()
        )


class SpecValidator:
    def __init__(self, spec_dir: Path) -> None:
        path = (spec_dir / SPEC_FILE).resolve()
        if not path.is_file():
            raise ConfigError("sandbox.spec_dir", f"a folder holding {SPEC_FILE}", str(spec_dir))
        self._params, self._body = _spec_validators(path)

    def check(
        self, route_name: str, path: str, query: MultiMapping[str], body: bytes,
        content_type: str,
    ) -> Invalid | None:
        method = route_name.split(" ", 1)[0]
        request = _SpecRequest(method, path, query, body, content_type)
        errors: dict[str, str] = {}
        for exc in self._params.iter_errors(request):
            name = getattr(exc, "name", None) or "parameters"
            errors[name] = _describe(exc)
        if errors:
            return Invalid(400, ("Invalid request parameters.",), errors)
        for exc in self._body.iter_errors(request):
            # openapi-core wraps the reason (the cause) in a body error; read both's classes.
            kinds = {
                cls.__name__
                for e in (exc, exc.__cause__) if e is not None
                for cls in type(e).__mro__
            }
            if "MediaTypeNotFound" in kinds:
                return Invalid(415, (f"Unsupported media type: {content_type or 'none'}",))
            if "MissingRequestBodyError" in kinds:
                return Invalid(400, ("Missing required request body",))
            cause = exc.__cause__
            schema_errors = getattr(cause, "schema_errors", None)
            if schema_errors:
                errors.update(_field_errors(schema_errors, "body"))
            else:
                errors["body"] = _describe(exc)
        if errors:
            return Invalid(400, ("Request body validation error.",), errors)
        return None


def _describe(exc: BaseException) -> str:
    cause = exc.__cause__
    detail = getattr(cause, "schema_errors", None)
    if detail:
        return f"{exc}: {detail[0].message}"
    return f"{exc}: {cause}" if cause is not None else str(exc)


def make_validator(spec_dir: Path | None) -> Validator:
    """The real spec's validator with ``spec_dir``, else the project's own."""
    return SpecValidator(spec_dir) if spec_dir is not None else OwnValidator()
