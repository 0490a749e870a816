"""End-to-end tests: `forge-runner` as a real process against a sandbox served by the test."""
