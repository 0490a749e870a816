"""Events: one typed object per fact, given to observers and written as the log line."""

from __future__ import annotations

import io
import json
import logging
import re
from pathlib import Path

from structlog.testing import capture_logs

import runner.events as events_package
from runner.events import Emitter, Event, ItemFailed, MintOk, SystemTokenWaiting
from runner.logs.redact import REDACTED, register_secret
from runner.logs.setup import configure_logging
from tests.fakes import Events

RUNNER = Path(__file__).resolve().parents[1] / "runner"


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


def test_no_part_reports_a_fact_by_name() -> None:
    """No module of runner/ calls observer.event with a name: every fact is an Event class."""
    old_style = re.compile(r"\.event\(\s*f?[\"']")
    offenders = [str(path.relative_to(RUNNER)) for path in RUNNER.rglob("*.py")
                 if old_style.search(path.read_text())]
    assert not offenders


def test_every_event_has_its_own_name_listed_in_the_catalogue() -> None:
    """Each Event class runner.events exports has a distinct name and is in its catalogue."""
    exported = [getattr(events_package, n) for n in events_package.__all__]
    classes = [c for c in exported if isinstance(c, type) and issubclass(c, Event) and c.name]
    names = [cls.name for cls in classes]
    assert len(classes) > 30 and len(set(names)) == len(names)
    catalogue = events_package.__doc__ or ""
    assert [cls.__name__ for cls in classes if cls.__name__ not in catalogue] == []
