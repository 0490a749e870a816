"""Events: one typed object per fact, given to observers and written as the log line."""

from __future__ import annotations

import io
import json
import logging
import re
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from runner.events import Emitter, Event, ItemFailed, MintOk, SystemTokenWaiting
from runner.events_legacy import LEGACY, as_event
from runner.logs.redact import REDACTED, register_secret
from runner.logs.setup import configure_logging
from tests.fakes import Events

RUNNER = Path(__file__).resolve().parents[1] / "runner"
# The parts that still report with observer.event(name, **fields).
LEGACY_EMITTERS = ["jira/executor.py", "minting/minter.py", "engine/rowworker.py",
                   "budgets/cooldown.py", "budgets/jira.py", "budgets/mint.py",
                   "budgets/permit.py"]


def test_one_emit_reaches_the_observer_and_the_log() -> None:
    """The observer gets the very object; the log line is runner.<name> with its fields."""
    events = Events()
    ev = MintOk(environment="prod", site="alpha", account="acc-1", request_id="r-1")
    with capture_logs() as logs:
        Emitter(events)(ev)
    assert events.seen == [ev]
    assert logs == [{"event": "runner.mint.ok", "log_level": "info", "environment": "prod",
                     "site": "alpha", "account": "acc-1", "ttl_s": None, "request_id": "r-1",
                     "trace_id": None}]


def test_the_log_level_follows_the_event_class() -> None:
    """Waiting for a system token and a failed item are warnings; a mint is info."""
    with capture_logs() as logs:
        emit = Emitter()
        emit(SystemTokenWaiting(environment="prod", reason="expired"))
        emit(ItemFailed(site="a", account="b", row="1", action="x", reason="http 400"))
        emit(MintOk(environment="prod", site="a", account="b"))
    assert [(e["event"], e["log_level"]) for e in logs] == [
        ("runner.system_token.waiting", "warning"),
        ("runner.item.failed", "warning"),
        ("runner.mint.ok", "info"),
    ]


def test_an_emitted_event_is_redacted_in_the_log(restore_logging: None) -> None:
    """A registered token inside an event's field never reaches the rendered log line."""
    token = "tok-" + "x7Q2" * 12
    register_secret(token)
    stream = io.StringIO()
    configure_logging(format="json", stream=stream, level=logging.INFO)
    Emitter()(SystemTokenWaiting(environment="prod", reason=f"bad {token}"))
    line = json.loads(stream.getvalue().splitlines()[-1])
    assert line["event"] == "runner.system_token.waiting"
    assert token not in stream.getvalue() and line["reason"] == f"bad {REDACTED}"


def test_every_old_style_name_still_emitted_has_a_class() -> None:
    """Each name calls/minting/budgets/rowworker pass to observer.event maps to its class."""
    names: set[str] = set()
    for path in LEGACY_EMITTERS:
        text = (RUNNER / path).read_text()
        names |= set(re.findall(r'\.event\(\s*"([a-z_.]+)"', text))
        if 'event(f"item.{state}"' in text:
            names |= {"item.skipped", "item.blocked"}
    assert names and names <= set(LEGACY), sorted(names - set(LEGACY))
    for name in names:
        assert issubclass(LEGACY[name], Event) and LEGACY[name].name == name


def test_an_old_style_call_becomes_its_typed_event() -> None:
    """observer.event(name, **fields) reaches observers as the class with those fields."""
    events = Events()
    events.event("item.failed", site="a", account="b", row="r1", action="x", reason="why")
    assert events.seen == [ItemFailed(site="a", account="b", row="r1", action="x", reason="why")]
    with pytest.raises(ValueError, match=r"item\.started"):
        as_event("item.started", {})
