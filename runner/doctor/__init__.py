"""Checks before a real run: one user end to end, and a Forge manifest against a job's needs."""
