"""The command-line subcommands, one module each (see ``runner.cli.COMMAND_MODULES``)."""

# The config file a command reads when --config is not given.
DEFAULT_CONFIG = "forge-runner.toml"
