"""Logging: redaction of registered secrets and credential patterns in every output path."""

from __future__ import annotations

import io
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

import pytest
from structlog.contextvars import bound_contextvars
from structlog.testing import capture_logs

from runner.logs import setup
from runner.logs.redact import REDACTED, redact, redact_value, register_secret
from runner.logs.setup import LogFormat, configure_logging, get_logger

# Every test here configures logging for the process.
pytestmark = pytest.mark.usefixtures("restore_logging")


def _secret() -> str:
    return "tok-" + secrets.token_urlsafe(24)


def _json_lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


def test_registered_secret_hidden_in_nested_values() -> None:
    """A registered token inside nested dicts, lists, tuples and dict keys never reaches JSON."""
    token = _secret()
    register_secret(token)
    out = io.StringIO()
    configure_logging(format="json", stream=out)
    get_logger().info(
        "runner.test.nested",
        outer={"list": [1, ("x", f"before {token} after")], token: "as a key"},
        plain=token,
    )
    text = out.getvalue()
    assert token not in text
    (line,) = _json_lines(out)
    assert line["event"] == "runner.test.nested"
    assert line["plain"] == REDACTED
    outer = line["outer"]
    assert isinstance(outer, dict)
    assert outer["list"] == [1, ["x", f"before {REDACTED} after"]]
    assert outer[REDACTED] == "as a key"


@pytest.mark.parametrize("fmt", ["console", "plain", "json"])
def test_exception_text_redacted_in_every_format(fmt: LogFormat) -> None:
    """A traceback logged with exc_info shows the exception but not the secret in its message."""
    token = _secret()
    register_secret(token)
    out = io.StringIO()
    configure_logging(format=fmt, stream=out)
    log = get_logger()
    try:
        raise ValueError(f"gateway refused {token}")
    except ValueError:
        log.error("runner.test.failed", exc_info=True)
    try:
        raise RuntimeError(f"second {token}")
    except RuntimeError:
        log.exception("runner.test.exception")
    text = out.getvalue()
    assert token not in text
    assert "ValueError: gateway refused" in text.replace("\\n", "\n")
    assert "RuntimeError: second" in text.replace("\\n", "\n")
    assert "runner.test.failed" in text and "runner.test.exception" in text


def test_stdlib_records_pass_through_redaction() -> None:
    """aiohttp-style stdlib records, their %-args and their exc_info are redacted too."""
    token = _secret()
    register_secret(token)
    out = io.StringIO()
    configure_logging(format="json", stream=out)
    stdlib = logging.getLogger("aiohttp.server")
    stdlib.warning("header was %s", f"Bearer {token}")
    try:
        raise ConnectionResetError(token)
    except ConnectionResetError:
        stdlib.exception("Error handling request")
    text = out.getvalue()
    assert token not in text
    first, second = _json_lines(out)
    assert first["event"] == f"header was Bearer {REDACTED}"
    assert first["logger"] == "aiohttp.server"
    assert second["event"] == "Error handling request"
    assert "ConnectionResetError" in str(second["exception"])


def test_the_pool_s_discarded_connections_are_not_logged() -> None:
    """psycopg_pool's warning for each dead connection it drops after a restart is left out;
    its other warnings (a failed connection attempt) are written."""
    out = io.StringIO()
    configure_logging(format="json", stream=out)
    pool_log = logging.getLogger("psycopg.pool")
    pool_log.warning("discarding broken connection: %s", "<psycopg.AsyncConnection [BAD]>")
    pool_log.warning("error connecting in %r: %s", "journal-readers", "connection refused")
    assert [line["event"] for line in _json_lines(out)] == [
        "error connecting in 'journal-readers': connection refused"]


def test_json_lines_carry_iso_time_level_and_bound_context() -> None:
    """JSON lines have the dotted event name, an ISO UTC timestamp and the task's bound context."""
    out = io.StringIO()
    configure_logging(format="json", stream=out)
    with bound_contextvars(run="run-1", user="5b10ac8d82e05b22cc7d4ef5", site="alpha"):
        get_logger().info("runner.mint.ok", environment="prod")
    (line,) = _json_lines(out)
    assert list(line)[:3] == ["timestamp", "level", "event"]
    assert line["event"] == "runner.mint.ok"
    assert line["level"] == "info"
    assert line["run"] == "run-1"
    assert (line["user"], line["site"]) == ("5b10ac8d82e05b22cc7d4ef5", "alpha")
    stamp = datetime.fromisoformat(str(line["timestamp"]).replace("Z", "+00:00"))
    assert stamp.utcoffset() == timedelta(0)


def test_plain_format_is_one_logfmt_line_per_event() -> None:
    """Plain output starts each line with timestamp, level and event, as key=value pairs."""
    out = io.StringIO()
    configure_logging(format="plain", stream=out)
    get_logger().info("runner.progress", done=3, left=7)
    (line,) = out.getvalue().splitlines()
    assert line.startswith("timestamp=")
    assert " level=info event=runner.progress " in line
    assert "done=3" in line and "left=7" in line


def test_level_filters_lower_levels() -> None:
    """At level WARNING, info and debug events are dropped, for structlog and stdlib alike."""
    out = io.StringIO()
    configure_logging(format="json", level="WARNING", stream=out)
    get_logger().info("runner.test.quiet")
    logging.getLogger("aiohttp.access").info("quiet too")
    get_logger().warning("runner.test.loud")
    assert [line["event"] for line in _json_lines(out)] == ["runner.test.loud"]


def test_sensitive_keys_hidden_at_any_depth() -> None:
    """Values of token-like keys are hidden as event keys and as nested header names."""
    out = io.StringIO()
    configure_logging(format="json", stream=out)
    get_logger().info(
        "runner.test.keys",
        token="never-registered-1",
        system_token="never-registered-2",
        headers={"Authorization": "Basic abc", "X-Forge-OAuth-System": "zzz", "Accept": "json"},
        password="pw",
        secret=None,
    )
    (line,) = _json_lines(out)
    assert line["token"] == REDACTED
    assert line["system_token"] == REDACTED
    assert line["password"] == REDACTED
    assert line["secret"] is None
    assert line["headers"] == {
        "Authorization": REDACTED,
        "X-Forge-OAuth-System": REDACTED,
        "Accept": "json",
    }


def test_patterns_hide_bearer_jwt_and_key_value_text() -> None:
    """Bearer credentials, JWT-shaped strings and key=value secrets are hidden unregistered."""
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl-_x"
    text = (
        f"Authorization: Bearer abc.def-ghi sent {jwt} "
        "url ?token=q1w2e3&x=1 {'password': 'hunter 2', \"secret\": \"s\"} "
        "tokens=5 token_refresh_margin_s=300"
    )
    cleaned = redact(text)
    assert "abc.def-ghi" not in cleaned and "Bearer [REDACTED]" in cleaned
    assert jwt not in cleaned and "eyJ" not in cleaned
    assert "?token=[REDACTED]&x=1" in cleaned
    assert "'password': '[REDACTED]'" in cleaned
    assert '"secret": "[REDACTED]"' in cleaned
    # Words that merely start like a sensitive key keep their values.
    assert "tokens=5" in cleaned and "token_refresh_margin_s=300" in cleaned


def test_a_system_token_scope_keeps_its_environment_name() -> None:
    """``system_token:dev`` (a wait's scope, named after the environment) is shown as it is,
    while a system token after the same key, a JWT or a registered secret, is still hidden."""
    assert redact("paused=system_token:dev (waiting) system_token:prod-eu_2") == (
        "paused=system_token:dev (waiting) system_token:prod-eu_2")
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhcHAifQ.c2lnbmF0dXJl"
    assert redact(f"system_token:{jwt}") == f"system_token:{REDACTED}"
    assert redact("system_token=dev") == f"system_token={REDACTED}"
    assert redact("system_token: dev") == f"system_token: {REDACTED}"
    secret = "opaque" + secrets.token_hex(8)
    register_secret(secret)
    assert redact(f"system_token:{secret}") == f"system_token:{REDACTED}"


def test_redact_finds_secrets_among_many_and_inside_longer_text() -> None:
    """With thousands registered, a secret is found alone, glued to other text, or extended."""
    many = [_secret() for _ in range(3000)]
    for value in many:
        register_secret(value)
    short, longer = "prefix-" + secrets.token_hex(8), None
    longer = short + "-extended"
    register_secret(short)
    register_secret(longer)
    odd = f"with space {secrets.token_hex(4)}"
    register_secret(odd)
    text = f"a {many[10]} b X{many[2000]}Y {longer} {short}. [{odd}]"
    assert redact(text) == f"a {REDACTED} b X{REDACTED}Y {REDACTED} {REDACTED}. [{REDACTED}]"


def test_too_short_values_are_not_registered() -> None:
    """Values shorter than MIN_SECRET_LENGTH are ignored, so common words are never hidden."""
    register_secret("abc")
    register_secret("")
    register_secret(None)
    assert redact("abc abcdef") == "abc abcdef"


class _Pair(NamedTuple):
    name: str
    value: str


def test_containers_keep_their_types() -> None:
    """Redacting rebuilds lists, tuples, namedtuples, sets and frozensets as the same types."""
    token = _secret()
    register_secret(token)
    cleaned = redact_value(
        {"l": [token], "t": (token,), "n": _Pair("a", token), "s": {token}, "f": frozenset([1])}
    )
    assert cleaned == {
        "l": [REDACTED], "t": (REDACTED,), "n": _Pair("a", REDACTED), "s": {REDACTED},
        "f": frozenset([1]),
    }
    assert type(cleaned["n"]) is _Pair


@dataclass
class _Leaky:
    value: str


def test_objects_whose_repr_shows_a_secret_are_replaced() -> None:
    """An object whose repr would print a registered token is rendered as redacted text."""
    token = _secret()
    register_secret(token)
    out = io.StringIO()
    configure_logging(format="console", stream=out)
    get_logger().info("runner.test.repr", obj=_Leaky(token), error=KeyError(token))
    text = out.getvalue()
    assert token not in text
    assert f"_Leaky(value='{REDACTED}')" in text
    assert f"KeyError: '{REDACTED}'" in text


def test_capture_logs_shows_event_names() -> None:
    """Tests can read the stable dotted event names a part logs with capture_logs."""
    with capture_logs() as captured:
        get_logger().info("runner.mint.rate_limited", bucket="prod")
        get_logger().warning("runner.jira.rate_limited", site="alpha")
    assert [entry["event"] for entry in captured] == [
        "runner.mint.rate_limited",
        "runner.jira.rate_limited",
    ]
    assert captured[0]["bucket"] == "prod"


def test_reconfiguring_replaces_only_our_handler() -> None:
    """Calling configure_logging twice leaves one forge-runner handler and keeps others'."""
    foreign = logging.NullHandler()
    root = logging.getLogger()
    root.addHandler(foreign)
    try:
        configure_logging(format="json", stream=io.StringIO())
        second = io.StringIO()
        configure_logging(format="json", stream=second)
        ours = [h for h in root.handlers if getattr(h, "_forge_runner_handler", False)]
        assert len(ours) == 1
        assert foreign in root.handlers
        get_logger().info("runner.test.once")
        assert len(_json_lines(second)) == 1
    finally:
        root.removeHandler(foreign)


def test_default_configuration_redacts_before_setup(capsys: pytest.CaptureFixture[str]) -> None:
    """Before configure_logging runs, the default structlog chain already redacts secrets."""
    token = _secret()
    register_secret(token)
    setup._install_default()
    get_logger().info("runner.test.early", header=f"Bearer {token}", value=token)
    err = capsys.readouterr().err
    assert "runner.test.early" in err
    assert token not in err


def test_unknown_format_is_refused() -> None:
    """An unknown log format is an error naming the allowed ones."""
    with pytest.raises(ValueError, match="console, plain or json"):
        configure_logging(format="xml", stream=io.StringIO())  # type: ignore[arg-type]


def test_secret_set_is_bounded_and_forgets_the_oldest() -> None:
    """Past its limit the secret set forgets the oldest token (memory follows concurrency, not
    job size) and still hides every newer one, including one sharing the old one's anchor."""
    from runner.logs.redact import _SecretSet

    secrets = _SecretSet(limit=3)
    values = [f"tok-{'a' * 20}{n}" for n in range(4)]
    for value in values:
        secrets.add(value)
    assert len(secrets) == 3
    assert secrets.sub(values[0]) == values[0]
    for value in values[1:]:
        assert value not in secrets.sub(f"x {value} y")
