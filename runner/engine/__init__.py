"""The engine: a job's rows scheduled fairly, each user's actions in order, shutdown on signals."""
