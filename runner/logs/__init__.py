"""Logging: ``setup`` configures structlog and its output; ``redact`` hides every secret.

Importing any module of this package installs a redacting default first, so a part that logs
before the CLI configures anything still cannot leak a token.
"""

from runner.logs.setup import install_default_once

install_default_once()
