"""The command line: parse, load, configure logging, run. Each subcommand lives in its own module.

Exit codes (``runner.errors.ExitCode``): 0 all done, 1 some items failed, 2 invalid input,
3 an environment blocked, 4 the job is already running elsewhere, 5 a run that did nothing (no
rows, or every item skipped), 130 interrupted (SIGINT), 143 stopped by SIGTERM.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from runner.errors import ExitCode, InputError
from runner.progress.output import add_color_option, refusal_line

# Modules that each define `add_parser(subparsers)`; the parser they add sets `func(args) -> int`.
COMMAND_MODULES = (
    "runner.sandbox.cli",
    "runner.commands.run",
    "runner.commands.plan",
    "runner.commands.status",
    "runner.commands.report",
    "runner.commands.serve",
    "runner.commands.doctor",
)

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="forge-runner",
        description="Bulk work as many Atlassian users at once: paced, journaled, resumable.",
        epilog="Exit codes: 0 all done, 1 some items failed, 2 invalid input, "
        "3 an environment blocked, 4 already running, 5 nothing done (no rows, or every item "
        "skipped; --allow-empty), 130 interrupted (SIGINT), 143 stopped (SIGTERM).",
    )
    add_color_option(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except InputError as exc:
        # Under --log-format json every line is JSON, the refusal too.
        json_mode = getattr(args, "log_format", None) == "json"
        print(refusal_line(str(exc), ExitCode.INVALID_INPUT, json_mode=json_mode),
              file=sys.stderr)
        return ExitCode.INVALID_INPUT
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
