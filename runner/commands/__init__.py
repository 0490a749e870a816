"""The command-line subcommands, one module each (see ``runner.cli.COMMAND_MODULES``)."""

import argparse

# The config file a command reads when --config is not given.
DEFAULT_CONFIG = "forge-runner.toml"


def positive_int(text: str) -> int:
    """An argument that must be a whole number of at least 1 (argparse exits 2 otherwise)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is less than 1")
    return value


def port_number(text: str) -> int:
    """A TCP port, 0 (any free one) to 65535 (argparse exits 2 otherwise)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port (0 to 65535)")
    return value
