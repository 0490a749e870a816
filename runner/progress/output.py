"""What `run` prints around the engine, for a terminal, a pipe, a file or a log shipper.

One ``RunOutput`` decides, once, from the options and where stdout goes:

- text never passes through rich markup or emoji codes: ARIs (``[ari:cloud:jira:...]``,
  ``:cloud:``), Jira's messages and file names print as they are;
- on a terminal rich wraps at its width; anywhere else nothing is wrapped (a suggested command
  stays on one line for whoever copies it from a log);
- ``--log-format json``: every line is a JSON object on stderr, the notes and the summary too
  (``runner.run.summary``), so ``2>&1`` stays parseable line by line;
- ``--quiet``: the summary and warnings only;
- colour (``--color auto|always|never``, ``NO_COLOR``) carries meaning: done green, failed red.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from rich.console import Console
from rich.text import Text

from runner.errors import ExitCode
from runner.journal.reasons import text_of
from runner.logs.redact import redact
from runner.logs.setup import LogFormat, configure_logging, get_logger
from runner.progress.live import STATE_STYLES, LiveView, PlainProgress
from runner.progress.stats import ITEM_STATES, RunStats
from runner.progress.summary import Summary

ColorChoice = Literal["auto", "always", "never"]
SUMMARY_EVENT = "runner.run.summary"


COLOR_CHOICES = ("auto", "always", "never")


def add_color_option(parser: argparse.ArgumentParser, *, default: object = "auto") -> None:
    """``--color auto|always|never``; a subcommand's copy passes ``argparse.SUPPRESS`` so the
    main parser's value (``forge-runner --color never run ...``) is not overwritten."""
    parser.add_argument("--color", choices=COLOR_CHOICES, default=default,
                        help="colour in what is printed: auto (a terminal, unless NO_COLOR is "
                        "set), always, never (default: auto)")


def wants_color(choice: ColorChoice, stream: Any) -> bool:
    """``always``, ``never``, or (auto) when ``stream`` is a terminal and ``NO_COLOR`` is unset
    or empty (https://no-color.org: a flag given on the command line wins over it)."""
    if choice != "auto":
        return choice == "always"
    if os.environ.get("NO_COLOR"):
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


class RunOutput:
    """The console, the log set-up and the display of one `run` command."""

    def __init__(self, *, log_format: LogFormat | None, quiet: bool, verbose: bool,
                 color: ColorChoice = "auto") -> None:
        self.tty = sys.stdout.isatty()
        self.format: LogFormat = log_format or ("console" if self.tty else "plain")
        self.json = self.format == "json"
        self.quiet = quiet
        colors = wants_color(color, sys.stdout)
        self.console = Console(
            markup=False,
            emoji=False,
            highlight=False,
            soft_wrap=not self.tty,
            # Colour into a pipe only when asked for; a terminal stays a terminal without it.
            force_terminal=True if colors and not self.tty else None,
            no_color=not colors,
        )
        self.live = self.tty and not quiet and not self.json
        # Under the live view, per-user info lines would bury it: warnings and errors only,
        # unless asked. Plain lines keep every info line: they are the record of the run.
        level = "INFO" if verbose or not (self.live or quiet) else "WARNING"
        # No stream: the handler follows rich's redirected stderr, so lines print above the view.
        configure_logging(format=self.format, level=level,
                          colors=wants_color(color, sys.stderr), always=(SUMMARY_EVENT,))
        self._log = get_logger()

    def note(self, text: str | Text, event: str, **fields: Any) -> None:
        """An info line (``starting run ...``): JSON ``event`` in json mode; none when quiet."""
        if self.json:
            self._log.info(event, **fields)
        elif not self.quiet:
            self.console.print(text)

    def caution(self, message: str, event: str, **fields: Any) -> None:
        """A warning before anything is sent (``--fresh`` repeats creates), on stderr even when
        quiet; a JSON ``event`` at warning in json mode."""
        if self.json:
            self._log.warning(event, message=message, **fields)
        else:
            print(message, file=sys.stderr, flush=True)

    def refuse(self, message: str, code: ExitCode) -> None:
        """A one-line refusal on stderr (where cron mails it from), as JSON in json mode."""
        print(refusal_line(message, code, json_mode=self.json), file=sys.stderr, flush=True)

    def progress(self, stats: RunStats, title: str) -> LiveView | PlainProgress | None:
        """The live view on a terminal, ``runner.progress`` lines elsewhere, none when quiet."""
        if self.quiet:
            return None
        if self.live and not self.console.is_dumb_terminal:
            return LiveView(stats, console=self.console, title=title)
        return PlainProgress(stats)

    def summary(self, stats: RunStats, *, run_id: str, job: str, exit_code: int,
                closing: str, blocked: Mapping[str, str],
                lower_bound_s: float | None) -> None:
        """The end of the run: the summary, each blocked environment's diagnostic, and the
        closing line; in json mode one ``runner.run.summary`` event holding all of it."""
        if self.json:
            self._log.log(_summary_level(exit_code), SUMMARY_EVENT,
                          **summary_fields(stats, run_id=run_id, job=job, exit_code=exit_code,
                                           message=closing, blocked=blocked,
                                           lower_bound_s=lower_bound_s))
            return
        self.console.print(styled(Summary.render(stats, lower_bound_s=lower_bound_s)))
        for env, diagnostic in blocked.items():
            self.console.print(Text(f"environment {env} is blocked", style="bold red"))
            self.console.print(Text(redact(diagnostic)))
        style = "green" if exit_code == ExitCode.OK else "bold red"
        if exit_code in (ExitCode.INTERRUPTED, ExitCode.TERMINATED):
            style = "yellow"
        self.console.print(Text(redact(closing), style=style))


def refusal_line(message: str, code: int, *, json_mode: bool) -> str:
    """``forge-runner: MESSAGE``, or the same as one JSON log line."""
    if not json_mode:
        return f"forge-runner: {redact(message)}"
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return json.dumps({"timestamp": now, "level": "error", "event": "runner.refused",
                       "message": redact(message), "exit_code": int(code)})


def summary_fields(stats: RunStats, *, run_id: str, job: str, exit_code: int, message: str,
                   blocked: Mapping[str, str], lower_bound_s: float | None) -> dict[str, Any]:
    """The summary as the fields of one JSON event: counts, duration, exit code, reasons."""
    return {
        "run": run_id,
        "job": job,
        "exit_code": int(exit_code),
        "message": redact(message),
        "total": stats.total,
        "finished": stats.finished,
        **{state: getattr(stats.counts, state) for state in ITEM_STATES},
        "duration_s": round(stats.elapsed_s(), 3),
        "lower_bound_s": None if lower_bound_s is None else round(lower_bound_s, 3),
        "mints": sum(stats.mints.values()),
        "refused_users": sum(stats.refused_users.values()),
        "rate_limited": sum(stats.rate_limits.values()),
        "mints_refused": stats.mints_refused,
        "reasons": [{"state": s, "reason": redact(r), "text": text_of(r),
                     "message": stats.message_of(s, r) or None, "count": n}
                    for s, r, n in stats.top_reasons(5)],
        "blocked": {env: redact(d) for env, d in blocked.items()},
    }


def _summary_level(exit_code: int) -> int:
    # A run that did not do its work says so at a level alerting can match on.
    if exit_code == ExitCode.OK:
        return logging.INFO
    return logging.ERROR if exit_code == ExitCode.BLOCKED else logging.WARNING


def styled(summary: str) -> Text:
    """The summary's text with each state's count in its colour (done green, failed red)."""
    text = Text(summary)
    for state, style in STATE_STYLES.items():
        # "0 done" stays plain: green for nothing would be the lie this is here to avoid.
        text.highlight_regex(rf"\b[1-9][\d,]* {state}\b", style)
    return text
