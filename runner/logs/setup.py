"""Logging set-up: structlog with stable dotted event names, every chain redacting.

Event names are dotted and stable (``runner.mint.rate_limited``); context is bound per task with
``structlog.contextvars.bound_contextvars(run=..., user=..., site=...)`` and merged into every
line. Timestamps are ISO 8601 UTC.

``configure_logging`` routes stdlib ``logging`` (aiohttp's loggers) through the same processors,
and exceptions are rendered to text *before* redaction (``runner.logs.redact``), so a
traceback's message is redacted too. Importing ``runner.logs`` (any of its modules) already
installs a redacting default, so a part that logs before the CLI configures anything still
cannot leak.
"""


from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Collection
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any, Literal

import structlog
from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger

from runner.logs.redact import redact_event

LogFormat = Literal["console", "plain", "json"]


def _lead_keys(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Timestamp, level and event first, so JSON lines read like the other formats."""
    lead = {k: event_dict[k] for k in ("timestamp", "level", "event") if k in event_dict}
    return {**lead, **event_dict}


# Fields holding POSIX times (events' ``until``, ``reset_at``, ``expires_at``...): text formats
# show them as ISO 8601, JSON keeps the number for machines.
TIME_KEYS = frozenset({"until", "reset_at", "expires_at", "at"})


def iso_time(posix: float) -> str:
    """``1796278682.823`` -> ``2026-12-03T06:18:02.823Z`` (UTC, milliseconds)."""
    moment = datetime.fromtimestamp(posix, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _readable(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """For people reading text lines: times as ISO 8601, and no ``key=None`` noise (a field
    that is None says nothing)."""
    out: EventDict = {}
    for key, value in event_dict.items():
        if value is None:
            continue
        if key in TIME_KEYS and isinstance(value, int | float) and not isinstance(value, bool):
            value = iso_time(float(value))
        out[key] = value
    return out


def _timestamper() -> Processor:
    return structlog.processors.TimeStamper(fmt="iso", utc=True)


def _text_steps(format: LogFormat) -> list[Processor]:
    return [] if format == "json" else [_readable]


def _renderer(format: LogFormat, colors: bool) -> Processor:
    if format == "json":
        return structlog.processors.JSONRenderer(sort_keys=False)
    if format == "plain":
        return structlog.processors.LogfmtRenderer(
            key_order=["timestamp", "level", "event"], bool_as_flag=False
        )
    if format == "console":
        # Exceptions arrive already rendered (and redacted) as text; the renderer prints them.
        return structlog.dev.ConsoleRenderer(colors=colors)
    raise ValueError(f"log format: expected console, plain or json, found {format!r}")


if TYPE_CHECKING:
    _StreamHandler = logging.StreamHandler[IO[str]]
else:
    _StreamHandler = logging.StreamHandler


class _StderrHandler(_StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time, so a live display that redirects
    stderr (rich's ``Live``) keeps log lines above itself instead of tearing through it."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr  # handle() holds the handler's lock here
        super().emit(record)

    def flush(self) -> None:
        with self.lock or contextlib.nullcontext():
            self.stream = sys.stderr
        super().flush()


def configure_logging(
    *,
    format: LogFormat = "console",
    level: int | str = "INFO",
    stream: IO[str] | None = None,
    colors: bool | None = None,
    always: Collection[str] = (),
) -> None:
    """Send structlog and stdlib logging through one chain that always redacts.

    ``stream`` defaults to the current ``sys.stderr``. ``colors`` (console format only)
    defaults to whether that stream is a terminal. Events named in ``always`` (the run's
    summary) are written whatever ``level`` filters out. Calling again replaces the handler
    this function installed before; handlers others put on the root logger are left alone.
    """
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(numeric, int):
        raise ValueError(f"log level: expected a level name or number, found {level!r}")
    if colors is None:
        colors = bool(getattr(stream or sys.stderr, "isatty", lambda: False)())
    renderer = _renderer(format, colors)
    # Named events must get past the loggers' level to reach the handler's filter.
    lowest = min(numeric, logging.INFO) if always else numeric

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        _timestamper(),
        structlog.processors.StackInfoRenderer(),
    ]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact_event,
            *_text_steps(format),
            _lead_keys,
            renderer,
        ],
    )
    handler: logging.Handler = (
        logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    )
    handler.setFormatter(formatter)
    if always:
        handler.addFilter(_LevelOrNamed(numeric, always))
    handler.addFilter(_not_pool_discards)
    setattr(handler, _HANDLER_MARK, True)

    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(lowest)

    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(lowest),
        context_class=dict,
        cache_logger_on_first_use=False,
    )


_HANDLER_MARK = "_forge_runner_handler"


class _LevelOrNamed(logging.Filter):
    """Passes records at ``level`` or above, and structlog events named in ``names``."""

    def __init__(self, level: int, names: Collection[str]) -> None:
        super().__init__()
        self.level = level
        self.names = frozenset(names)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= self.level:
            return True
        msg = record.msg
        return isinstance(msg, dict) and msg.get("event") in self.names


def _not_pool_discards(record: logging.LogRecord) -> bool:
    """Drops psycopg_pool's "discarding broken connection: <...>" warnings: after a database
    restart the pool's check drops each dead connection with one, and the journal already
    says, once, that it is waiting for the database and when it is back."""
    return not (record.name == "psycopg.pool" and isinstance(record.msg, str)
                and record.msg.startswith("discarding "))


def _install_default() -> None:
    """Until ``configure_logging`` runs, structlog prints to stderr, still redacted."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            _timestamper(),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            redact_event,
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        # The stderr of the moment, not of import time (tests and live displays swap it).
        logger_factory=lambda *_: structlog.PrintLogger(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        cache_logger_on_first_use=False,
    )


def get_logger(**initial: Any) -> FilteringBoundLogger:
    """A structlog logger; its events go through the redacting chain whatever is configured."""
    logger: FilteringBoundLogger = structlog.get_logger(**initial)
    return logger


def install_default_once() -> None:
    """The redacting default, unless logging is configured already (``runner.logs`` calls this
    when first imported)."""
    if not structlog.is_configured():
        _install_default()
