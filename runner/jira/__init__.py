"""Jira REST: the client and its wire values, the call executor, rate-limit headers, recovery."""
