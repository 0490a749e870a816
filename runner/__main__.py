"""`python -m runner` is `forge-runner`."""

import sys

from runner.cli import main

sys.exit(main())
