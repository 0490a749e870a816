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
from typing import IO, TYPE_CHECKING, Any, Literal

import structlog
from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger

from runner.logs.redact import redact_event

LogFormat = Literal["console", "plain", "json"]


def _lead_keys(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Timestamp, level and event first, so JSON lines read like the other formats."""
    lead = {k: event_dict[k] for k in ("timestamp", "level", "event") if k in event_dict}
    return {**lead, **event_dict}


def _timestamper() -> Processor:
    return structlog.processors.TimeStamper(fmt="iso", utc=True)


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
) -> None:
    """Send structlog and stdlib logging through one chain that always redacts.

    ``stream`` defaults to the current ``sys.stderr``. Calling again replaces the handler this
    function installed before; handlers others put on the root logger are left alone.
    """
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(numeric, int):
        raise ValueError(f"log level: expected a level name or number, found {level!r}")
    colors = bool(getattr(stream or sys.stderr, "isatty", lambda: False)())
    renderer = _renderer(format, colors)

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
            _lead_keys,
            renderer,
        ],
    )
    handler: logging.Handler = (
        logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    )
    handler.setFormatter(formatter)
    setattr(handler, _HANDLER_MARK, True)

    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(numeric)

    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        context_class=dict,
        cache_logger_on_first_use=False,
    )


_HANDLER_MARK = "_forge_runner_handler"


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
