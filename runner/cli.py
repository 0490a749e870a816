"""The command line: parse, load, configure logging, run. Each subcommand lives in its own module.

Exit codes (``runner.errors.ExitCode``): 0 all done, 1 some items failed, 2 invalid input,
3 an environment (or some items) blocked, 4 the job is already running elsewhere, 5 a run that
did nothing (no rows, or every item skipped), 6 the journal can't be reached, read or written
(or is newer than the code), 70 a bug, 130 interrupted (SIGINT), 143 stopped by SIGTERM.

Every ``RunnerError`` that ends a command is one line on stderr and its exit code; only an
unexpected exception (a bug) prints a traceback, with a line asking to report it. A reader
that closes the pipe early (``| head``) ends the command quietly with 0, as git does.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import sys
import traceback
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from runner.aio import single_error
from runner.errors import ExitCode, RunnerError
from runner.progress.output import add_color_option, refusal_line

# Modules that each define `add_parser(subparsers)`; the parser they add sets `func(args) -> int`.
COMMAND_MODULES = (
    "runner.sandbox.cli",
    "runner.commands.run",
    "runner.commands.plan",
    "runner.commands.status",
    "runner.commands.report",
    "runner.commands.export",
    "runner.commands.serve",
    "runner.commands.worker",
    "runner.commands.doctor",
)

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="forge-runner",
        description="Bulk work as many Atlassian users at once: paced, journaled, resumable.",
        epilog="Exit codes: 0 all done, 1 some items failed, 2 invalid input, "
        "3 an environment (or some items) blocked, 4 already running, 5 nothing done (no rows, "
        "or every item skipped; --allow-empty), 6 the journal can't be reached, read or "
        "written, or is newer than this forge-runner (fix it, then the same command resumes), "
        "70 a bug (please report it), 130 interrupted (SIGINT), 143 stopped (SIGTERM). A "
        "closed output pipe (| head) exits 0.",
    )
    add_color_option(parser)
    parser.add_argument("--version", action="version", version=f"forge-runner {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    return parser


def _version() -> str:
    try:
        return version("forge-runner")
    except PackageNotFoundError:  # pragma: no cover (run from a source tree, not installed)
        return "unknown"


def _unknown_command(parser: argparse.ArgumentParser, argv: Sequence[str]) -> str | None:
    """The one-line refusal of a first word that is no command, with the nearest one."""
    if not argv or argv[0].startswith("-"):
        return None
    commands = [name for action in parser._actions
                if isinstance(action, argparse._SubParsersAction) for name in action.choices]
    if argv[0] in commands:
        return None
    near = difflib.get_close_matches(argv[0], commands, n=1, cutoff=0.5)
    hint = f"did you mean {near[0]}? " if near else ""
    return (f"unknown command {argv[0]!r}; {hint}"
            f"(commands: {', '.join(commands)}; `forge-runner --help` describes them)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    words = list(sys.argv[1:] if argv is None else argv)
    if not words:
        parser.print_help()
        return ExitCode.OK
    refusal = _unknown_command(parser, words)
    if refusal is not None:
        print(f"forge-runner: {refusal}", file=sys.stderr)
        return ExitCode.INVALID_INPUT
    args = parser.parse_args(words)
    try:
        try:
            code: int = args.func(args)
            # Flushed here, not at exit: a reader gone by now is met below, quietly.
            sys.stdout.flush()
        except BaseExceptionGroup as group:
            # A task group's wrapping: the user meets the first error itself.
            raise single_error(group) from None
    except RunnerError as exc:
        # Under --log-format json every line is JSON, the refusal too.
        json_mode = getattr(args, "log_format", None) == "json"
        print(refusal_line(str(exc), ExitCode.of(exc), json_mode=json_mode), file=sys.stderr)
        return ExitCode.of(exc)
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        _discard_stdout()
        return ExitCode.OK
    except Exception:
        traceback.print_exc()
        print("forge-runner: unexpected error, a bug: please report it with the traceback "
              "above (what was journaled is safe; the same command resumes)", file=sys.stderr)
        return ExitCode.BUG
    return code


def _discard_stdout() -> None:
    """After the reader of stdout went away (``| head``): what is still buffered goes nowhere,
    so the interpreter's last flush at exit neither fails nor prints a warning."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real stdout (a test's capture): nothing to flush
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
