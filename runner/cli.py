"""The command line: parse, load, configure logging, run. Each subcommand lives in its own module.

Exit codes (``runner.errors.ExitCode``): 0 all done, 1 some items failed, 2 invalid input,
3 an environment blocked, 4 the job is already running elsewhere, 130 interrupted (SIGINT),
143 stopped by SIGTERM.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from runner.errors import ExitCode, InputError

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
        "3 an environment blocked, 4 already running, 130 interrupted (SIGINT), "
        "143 stopped (SIGTERM).",
    )
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
        print(f"forge-runner: {exc}", file=sys.stderr)
        return ExitCode.INVALID_INPUT
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
