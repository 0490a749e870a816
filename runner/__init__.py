"""forge-runner: bulk work as many Atlassian users at once, paced, journaled and resumable."""

from runner.errors import (
    BlockedEnvironmentError,
    ConfigError,
    GatewayError,
    InputError,
    JobError,
    JournalError,
    RunLockedError,
    RunnerError,
    SystemTokenError,
    TransportError,
)

__all__ = [
    "BlockedEnvironmentError",
    "ConfigError",
    "GatewayError",
    "InputError",
    "JobError",
    "JournalError",
    "RunLockedError",
    "RunnerError",
    "SystemTokenError",
    "TransportError",
]
__version__ = "0.1.0"
